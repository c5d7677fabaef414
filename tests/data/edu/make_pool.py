#!/usr/bin/env python3
"""Rebuild tests/data/edu/pool.jsonl: real English documents of mixed educational value.

Every document is text shipped in a Debian bookworm package (main). The script
downloads the pinned .deb files with `apt-get download` into a cache folder
(only when missing), unpacks them with `dpkg-deb -x`, cuts the text into
documents of roughly 800-4,000 characters and writes one JSON object a line.

Nothing is scored here: the pool is the input for the edu scorer.

    apt-get update -o Acquire::Languages=en      # long package descriptions (Translation-en)
    python3 tests/data/edu/make_pool.py --download [--cache /tmp/edu-cache] [--out tests/data/edu/pool.jsonl]

Without --download the build runs offline from the cache. See SOURCES.md beside this file.

Needs: apt-get (only to download), dpkg-deb, man + groff + col (man pages),
pod2text (perl docs). Standard library only otherwise. Output is deterministic
for a given set of .deb files: documents are picked by a stable hash, never at
random.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import html
import html.entities
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIN_CHARS = 700      # shorter documents are dropped
MAX_CHARS = 4000     # longer ones are cut (at a paragraph boundary where possible)
PACK_TARGET = 3200   # chunker aims below this
PER_PACKAGE_CAP = 120

# Debian bookworm (main) packages, pinned to the versions the pool was built from.
DEBS = {
    # high-value prose: manuals, tutorials, handbooks
    "python3.11-doc": "3.11.2-6+deb12u9",
    "debian-handbook": "11.20220922",
    "debian-reference-en": "2.100",
    "kstars-data": "5:3.6.2-2",
    "stellarium-data": "0.22.2-1",
    "gimp-help-en": "2.10.34-2",
    "gimp-help-common": "2.10.34-2",
    "perl-doc": "5.36.0-7+deb12u4",
    "git-doc": "1:2.39.5-0+deb12u3",
    "postgresql-doc-15": "15.20-0+deb12u1",
    "r-doc-html": "4.2.2.20221110-2",
    "guile-3.0-doc": "3.0.8-2",
    "lilypond-doc": "2.24.1-2",
    "gnucash-docs": "4.13-1",
    "kalzium-data": "4:22.12.3-1",
    "step": "4:22.12.3-1",
    "kturtle": "4:22.12.3-1",
    "kbruch": "4:22.12.3-1",
    "kmplot": "4:22.12.3-1",
    "kig": "4:22.12.3-1",
    "marble-data": "4:22.12.3-1",
    "kgeography-data": "4:22.12.3-1",
    "gcompris-qt-data": "3.1-2",
    "maxima-doc": "5.46.0-11",
    # mid-value: reference manuals, FAQs, help files, policy texts
    "debian-faq": "11.1",
    "doc-debian": "11.3+nmu1",
    "developers-reference": "12.18",
    "maint-guide": "1.2.53",
    "debian-policy": "4.6.2.0",
    "vim-runtime": "2:9.0.1378-2+deb12u2",
    "gnome-user-docs": "43.0-2",
    "bash-doc": "5.2.15-2",
    "manpages": "6.03-2",
    "manpages-dev": "6.03-2",
    "freeciv-data": "3.0.6-1+deb12u1",
    "dict-jargon": "4.4.7-3.1",
    "dict-gcide": "0.48.5+nmu2",
    "dict-devil": "1.0-13.1",
    "dict-elements": "20001107-a-9.1",
    # small tools: man pages, info manuals, configs, changelogs, copyright files
    "coreutils": "9.1-1",
    "grep": "3.8-5",
    "sed": "4.9-1+deb12u1",
    "gzip": "1.12-1",
    "diffutils": "1:3.8-4",
    "findutils": "4.9.0-4",
    "bc": "1.07.1-3+b1",
    "ed": "1.19-1",
    "units": "2.22-2",
    "time": "1.9-0.2",
    "tar": "1.34+dfsg-1.2+deb12u1",
    "bash": "5.2.15-2+b13",
    "nano": "7.2-1+deb12u1",
    "openssh-client": "1:9.2p1-2+deb12u10",
    "openssh-server": "1:9.2p1-2+deb12u10",
    "curl": "7.88.1-10+deb12u15",
    "wget": "1.21.3-1+deb12u1",
    "rsync": "3.5.0+ds1-0+deb12u1",
    "less": "590-2.1~deb12u2",
    "procps": "2:4.0.2-3",
    "util-linux": "2.38.1-5+deb12u3",
    "logrotate": "3.21.0-1",
    "cron": "3.0pl1-162",
    "sudo": "1.9.13p3-1+deb12u4",
    "git": "1:2.39.5-0+deb12u3",
    "vim-common": "2:9.0.1378-2+deb12u2",
    "apache2": "2.4.71-1~deb12u1",
    "postfix": "3.7.11-0+deb12u1",
    "samba-common": "2:4.17.12+dfsg-0+deb12u4",
    "lighttpd": "1.4.69-1",
    "rsyslog": "8.2302.0-1+deb12u2",
    "adduser": "3.134",
    "login": "1:4.13+dfsg1-1+deb12u2",
    "passwd": "1:4.13+dfsg1-1+deb12u2",
    "media-types": "10.0.0",
    "mime-support": "3.66",
    "dictionaries-common": "1.29.5",
    "wamerican": "2020.12.07-2",
    "base-files": "12.4+deb12u15",
    "sqlite3": "3.40.1-2+deb12u2",
    "make": "4.3-4.1",
    "gawk": "1:5.2.1-2",
    "inkscape": "1.2.2-2+deb12u1",
    "kalzium": "4:22.12.3-1",
    "spamassassin": "4.0.1-1~deb12u1",
    "fortunes": "1:1.99.1-7.3",
    "fortunes-min": "1:1.99.1-7.3",
}

# One SPDX-like licence per package, read from its debian/copyright (see SOURCES.md).
LICENCES = {
    "python3.11-doc": "PSF-2.0", "debian-handbook": "GPL-2.0-or-later OR CC-BY-SA-3.0",
    "debian-reference-en": "GPL-2.0-or-later", "kstars-data": "GFDL-1.2-or-later (no invariant sections)",
    "stellarium-data": "GPL-2.0-or-later", "gimp-help-en": "GFDL-1.2-or-later (no invariant sections)", "gimp-help-common": "GFDL-1.2-or-later (no invariant sections)",
    "perl-doc": "GPL-1.0-or-later OR Artistic-1.0-Perl", "git-doc": "GPL-2.0-only", "git": "GPL-2.0-only",
    "postgresql-doc-15": "PostgreSQL", "r-doc-html": "GPL-2.0-only", "guile-3.0-doc": "GFDL-1.3-or-later (no invariant sections)",
    "lilypond-doc": "GFDL-1.3-or-later", "gnucash-docs": "GFDL-1.1-or-later OR GPL-2.0-or-later",
    "kalzium-data": "GPL-2.0-or-later (data) / GFDL-1.2-only (doc)", "kalzium": "GPL-2.0-or-later", "step": "GFDL-1.2-or-later (no invariant sections)",
    "kturtle": "GFDL-1.2-or-later", "kbruch": "GFDL-1.2-or-later (no invariant sections)", "kmplot": "GFDL-1.2-or-later",
    "kig": "GFDL-1.2-or-later", "marble-data": "GFDL-1.2", "kgeography-data": "GFDL-1.2-or-later",
    "gcompris-qt-data": "GPL-3.0-or-later", "maxima-doc": "GPL-2.0-only",
    "debian-faq": "Debian-FAQ-permissive (verbatim and modified copies)", "doc-debian": "GPL AND OPL-1.0", "developers-reference": "GPL-2.0-only",
    "maint-guide": "GPL-2.0-or-later", "debian-policy": "GPL-2.0-or-later", "vim-runtime": "Vim",
    "vim-common": "Vim", "gnome-user-docs": "CC-BY-SA-3.0", "bash-doc": "GFDL-1.3 (no invariant sections) AND GPL-3.0-or-later",
    "bash": "GPL-3.0-or-later", "manpages": "Linux-man-pages-copyleft AND GPL-2.0-or-later AND BSD-2-Clause",
    "manpages-dev": "Linux-man-pages-copyleft AND GPL-2.0-or-later AND BSD-2-Clause",
    "freeciv-data": "GPL-2.0-or-later", "dict-jargon": "public-domain", "dict-gcide": "GPL-2.0-or-later",
    "dict-devil": "public-domain", "dict-elements": "public-domain",
    "coreutils": "GPL-3.0-or-later AND GFDL-1.3-or-later", "grep": "GPL-3.0-or-later AND GFDL-1.3-or-later",
    "sed": "GPL-3.0-or-later AND GFDL-1.3-or-later", "gzip": "GPL-3.0-or-later AND GFDL-1.3-or-later",
    "diffutils": "GPL-3.0-or-later AND GFDL-1.3-or-later", "findutils": "GPL-3.0-or-later AND GFDL-1.3-or-later",
    "bc": "GPL-2.0-or-later", "ed": "GPL-2.0-or-later AND GFDL-1.3-or-later", "units": "GPL-3.0-or-later AND GFDL-1.3-or-later",
    "time": "GPL-3.0-or-later", "tar": "GPL-3.0-or-later", "nano": "GPL-3.0-or-later",
    "openssh-client": "OpenSSH AND BSD-2-Clause AND BSD-3-Clause", "openssh-server": "OpenSSH AND BSD-2-Clause AND BSD-3-Clause",
    "curl": "curl", "wget": "GPL-3.0-or-later", "rsync": "GPL-3.0-or-later", "less": "GPL-3.0-or-later OR Less",
    "procps": "LGPL-2.1-or-later AND GPL-2.0-or-later", "util-linux": "GPL-2.0-or-later", "logrotate": "GPL-2.0-only",
    "cron": "Paul-Vixie's-license AND GPL-2.0-or-later", "sudo": "ISC", "apache2": "Apache-2.0", "postfix": "EPL-2.0 OR IPL-1.0",
    "samba-common": "GPL-3.0-or-later", "lighttpd": "BSD-3-Clause", "rsyslog": "GPL-3.0-or-later AND Apache-2.0",
    "adduser": "GPL-2.0-or-later", "login": "BSD-3-Clause", "passwd": "BSD-3-Clause",
    "media-types": "ad-hoc (permissive)", "mime-support": "ad-hoc (permissive)",
    "dictionaries-common": "GPL-2.0-or-later", "wamerican": "SCOWL (permissive, see copyright)",
    "base-files": "GPL-2.0-or-later (texts: their own licences, verbatim copying)",
    "sqlite3": "public-domain", "make": "GPL-3.0-or-later", "gawk": "GPL-3.0-or-later",
    "inkscape": "GPL-2.0-or-later", "spamassassin": "Apache-2.0",
    "fortunes": "BSD-4-Clause-UC (cookie files: see copyright)", "fortunes-min": "BSD-4-Clause-UC (cookie files: see copyright)",
}


# ---------------------------------------------------------------- utilities

def stable_key(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()


def pick(items: list, n: int, key) -> list:
    """Deterministic sample: the n items with the smallest hash, in their original order."""
    if len(items) <= n:
        return list(items)
    chosen = set(sorted(range(len(items)), key=lambda i: stable_key(key(items[i])))[:n])
    return [x for i, x in enumerate(items) if i in chosen]


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ").replace("\x00", "")
    lines = [ln.rstrip() for ln in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def pack(paras: list[str], target: int = PACK_TARGET) -> list[str]:
    """Join paragraphs into chunks of at most `target` chars (a longer paragraph is cut by lines)."""
    pieces: list[str] = []
    for p in paras:
        if len(p) <= target:
            pieces.append(p)
            continue
        cur = ""
        for ln in p.split("\n"):
            if cur and len(cur) + len(ln) + 1 > target:
                pieces.append(cur)
                cur = ln
            else:
                cur = f"{cur}\n{ln}" if cur else ln
        if cur:
            pieces.append(cur)
    out: list[str] = []
    cur = ""
    for p in pieces:
        if cur and len(cur) + len(p) + 2 > target:
            out.append(cur)
            cur = p
        else:
            cur = f"{cur}\n\n{p}" if cur else p
    return _last(out, cur)


def _last(done: list[str], cur: str) -> list[str]:
    """The pieces with the one being filled added: merged into the previous one when it is short and fits."""
    if cur:
        if done and len(cur) < MIN_CHARS and len(done[-1]) + len(cur) + 2 <= MAX_CHARS:
            done[-1] += "\n\n" + cur
        else:
            done.append(cur)
    return done


def sections_to_docs(sections: list[str]) -> list[str]:
    """Sections (each starting with its heading) -> documents: long ones split, short ones merged."""
    docs: list[str] = []
    cur = ""
    for s in sections:
        s = tidy(s)
        if not s:
            continue
        if len(s) > MAX_CHARS:
            if cur:
                docs.append(cur)
                cur = ""
            docs.extend(pack(paragraphs(s)))
            continue
        if cur and len(cur) >= MIN_CHARS + 300:
            docs.append(cur)
            cur = s
        elif cur and len(cur) + len(s) + 2 > MAX_CHARS:
            docs.append(cur)
            cur = s
        else:
            cur = f"{cur}\n\n{s}" if cur else s
    return _last(docs, cur)


HEAD = "\x01"  # marks a heading line in converted markup


def split_at_headings(text: str) -> list[str]:
    parts = re.split(r"\n(?=" + HEAD + ")", "\n" + text)
    return [p.replace(HEAD, "") for p in parts if p.strip()]


def truncate(text: str, limit: int = MAX_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n\n", 0, limit)
    if cut < limit * 0.6:
        cut = text.rfind("\n", 0, limit)
    if cut < limit * 0.6:
        cut = limit
    return text[:cut].rstrip()


# ------------------------------------------------------ markup -> plain text

class MarkupToText(HTMLParser):
    """HTML / DocBook / Mallard to plain text with paragraph breaks and heading marks."""

    BLOCK = {"p", "div", "br", "ul", "ol", "dl", "table", "blockquote", "section", "article", "hr",
             "para", "simpara", "formalpara", "sect1", "sect2", "sect3", "sect4", "sect5",
             "chapter", "itemizedlist", "orderedlist", "variablelist", "varlistentry", "tip", "note",
             "warning", "important", "caution", "example", "informalexample", "procedure", "glossentry",
             "glossdef", "qandaentry", "question", "answer", "figure", "caption", "tgroup", "tbody", "thead",
             "list", "terms", "steps", "synopsis", "page", "listing"}
    ITEM = {"li", "listitem", "step", "item", "dd", "tr", "row"}
    TERM = {"dt", "term", "glossterm"}
    CELL = {"td", "th", "entry"}
    PRE = {"pre", "screen", "programlisting", "literallayout"}
    HEADING = {"h1", "h2", "h3", "h4", "h5", "h6", "title"}
    SKIP = {"script", "style", "head", "nav", "sect1info", "sect2info", "chapterinfo", "bookinfo",
            "articleinfo", "info", "indexterm", "mediaobject", "screenshot", "inlinemediaobject",
            "authorgroup", "legalnotice", "keywordset", "revhistory", "textobject",
            "imageobject", "media", "credit", "license", "footer", "svg"}
    # void in HTML; DocBook <link> and <xref> are handled as transparent
    VOID = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source",
            "xref", "anchor", "co", "colspec", "spanspec", "include", "revision"}

    def __init__(self, skip_classes=(), skip_ids=(), root=None):
        super().__init__(convert_charrefs=True)
        self.skip_classes = set(skip_classes)
        self.skip_ids = set(skip_ids)
        self.root = root          # (attr, value): only text inside that element counts
        self.out: list[str] = []
        self.stack: list[tuple[str, bool, bool]] = []   # (tag, starts_skip, starts_root)
        self.skip = 0
        self.inroot = 0 if root else 1
        self.pre = 0
        self.heading = 0

    def _emit(self, s: str):
        self.out.append(s)

    def _brk(self, s="\n\n"):
        self._emit(s)

    def handle_starttag(self, tag, attrs):
        tag = tag.lower().split(":")[-1]
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        is_skip = (tag in self.SKIP or bool(classes & self.skip_classes) or a.get("id") in self.skip_ids
                   or (tag == "title" and a.get("type") == "link")
                   or (a.get("if:test") or "!").lstrip()[:1] != "!")   # Mallard: keep the default variant
        is_root = bool(self.root) and a.get(self.root[0]) == self.root[1]
        if tag in self.VOID:
            if tag in ("br", "hr") and not self.skip and self.inroot:
                self._brk("\n")
            return
        self.stack.append((tag, is_skip, is_root))
        if is_skip:
            self.skip += 1
        if is_root:
            self.inroot += 1
        if self.skip or not self.inroot:
            return
        if tag in self.HEADING:
            self.heading += 1
            self._brk("\n\n" + HEAD)
        elif tag in self.PRE:
            self.pre += 1
            self._brk()
        elif tag in self.ITEM:
            self._brk("\n- " if tag in ("li", "listitem", "step", "item") else "\n")
        elif tag in self.TERM:
            self._brk("\n")
        elif tag in self.CELL:
            self._emit(" | ")
        elif tag in self.BLOCK:
            self._brk()
        elif tag == "quote":
            self._emit("\u201c")
        elif tag in ("guisubmenu", "guimenuitem"):
            self._emit(" \u2192 ")

    def handle_endtag(self, tag):
        tag = tag.lower().split(":")[-1]
        if tag in self.VOID:
            return
        # pop to the matching tag (tolerates unclosed children)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                break
        else:
            return
        while len(self.stack) > i:
            t, was_skip, was_root = self.stack.pop()
            active = not self.skip and self.inroot
            if active:
                if t in self.HEADING:
                    self.heading = max(0, self.heading - 1)
                    self._brk()
                elif t in self.PRE:
                    self.pre = max(0, self.pre - 1)
                    self._brk()
                elif t in self.BLOCK or t in self.ITEM or t in self.TERM:
                    self._brk("\n" if t in self.TERM else "\n\n" if t in self.BLOCK else "")
                elif t == "quote":
                    self._emit("\u201d")
            if was_skip:
                self.skip -= 1
            if was_root:
                self.inroot -= 1

    def handle_data(self, data):
        if self.skip or not self.inroot:
            return
        if self.pre:
            self._emit(data)
            return
        data = re.sub(r"\s+", " ", data)
        if self.heading:
            data = data.replace("\u00b6", "")
        last = self.out[-1] if self.out else "\n"
        if last.endswith("\n") or last.endswith(HEAD):
            data = data.lstrip()
        self._emit(data)

    def text(self) -> str:
        raw = "".join(self.out)
        lines = []
        for ln in raw.split("\n"):
            ln = ln.rstrip()
            if ln.startswith(" ") and not ln.startswith("    "):
                ln = ln.lstrip()
            lines.append(ln)
        raw = "\n".join(lines)
        raw = re.sub(r"\n[ \t]*- *\n+(?=\S)", "\n- ", raw)          # "- " left alone on a line
        raw = re.sub(HEAD + r"\s*\n+", HEAD, raw)                       # heading mark next to its text
        raw = re.sub(r"\n" + HEAD + r"(?=\n|$)", "\n", raw)            # empty headings
        raw = re.sub(r"\n{3,}", "\n\n", raw)
        return raw.strip()


def markup_to_text(src: str, **kw) -> str:
    p = MarkupToText(**kw)
    p.feed(src)
    p.close()
    return p.text()


DOCBOOK_ENTITIES = {
    "eg": "e.g.", "ie": "i.e.", "etc": "etc.", "Dr": "Dr.", "kstars": "KStars", "ekos": "Ekos", "kde": "KDE", "kappname": "", "i18n-translatable": "",
    "Ctrl": "Ctrl", "Alt": "Alt", "Shift": "Shift", "Enter": "Enter", "Esc": "Esc", "Del": "Del",
    "Space": "Space", "Backspace": "Backspace", "Tab": "Tab", "Up": "Up", "Down": "Down", "Left": "Left",
    "Right": "Right", "PgUp": "PgUp", "PgDn": "PgDn", "Home": "Home", "End": "End", "Meta": "Meta",
    "kturtle": "KTurtle", "logo": "Logo", "step": "Step", "kbruch": "KBruch", "kmplot": "KmPlot",
    "kig": "Kig", "marble": "Marble", "kgeography": "KGeography", "gcompris": "GCompris", "indi": "INDI",
    "GNU": "GNU", "Linux": "Linux", "UNIX": "UNIX", "Qt": "Qt", "konqueror": "Konqueror", "plasma": "Plasma",
    "systemsettings": "System Settings", "dolphin": "Dolphin", "kalzium": "Kalzium", "kcalc": "KCalc",
    "underFDL": "", "underGPL": "", "underLGPL": "", "underBSDLicense": "", "FDLNotice": "", "documentation.index": "",
    "nbsp": " ", "mdash": "\u2014", "ndash": "\u2013", "hellip": "\u2026", "deg": "\u00b0", "times": "\u00d7",
    "lt": "&lt;", "gt": "&gt;", "amp": "&amp;", "quot": "\"", "apos": "'",
}


def expand_entities(src: str) -> str:
    def rep(m):
        name = m.group(1)
        if name.startswith("#"):
            return m.group(0)
        if name in DOCBOOK_ENTITIES:
            return DOCBOOK_ENTITIES[name]
        if name in html.entities.html5 or name + ";" in html.entities.html5:
            return m.group(0)
        return name[:1].upper() + name[1:]
    src = re.sub(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", "", src, flags=re.S)
    src = re.sub(r"<\?xml[^>]*\?>", "", src)
    return re.sub(r"&([#\w.-]+);", rep, src)



def _label(scope) -> str:
    """A readable name for an extractor made by a factory (used in the build report)."""
    vals = [str(v) for k, v in scope.items() if k in ("short", "pkg", "pkgs", "app", "name", "pattern")]
    return "/".join(vals)[:60]


# ------------------------------------------------------------- document model

class Doc(dict):
    pass


def make(src_short, pkg, path, kind, text, licence=None):
    return Doc(src_short=src_short, pkg=pkg, path=path, kind=kind, text=tidy(text),
               licence=licence or LICENCES[pkg])


# --------------------------------------------------------------- extractors
# Each extractor returns candidate documents; quotas below decide how many are kept.

class Tree:
    def __init__(self, cache: Path):
        self.cache = cache

    def root(self, pkg: str) -> Path:
        return self.cache / "x" / pkg

    def rel(self, pkg: str, p: Path) -> str:
        return "/" + str(p.relative_to(self.root(pkg)))

    def files(self, pkg: str, pattern: str) -> list[Path]:
        return sorted(p for p in self.root(pkg).glob(pattern) if p.is_file() and not p.is_symlink())


def html_pages(t: Tree, short, pkg, pattern, kind, skip_classes=(), skip_ids=(), root=None,
               exclude=(), page_docs=None):
    docs = []
    for f in t.files(pkg, pattern):
        if any(re.search(x, f.name) for x in exclude):
            continue
        text = markup_to_text(read_text(f), skip_classes=skip_classes, skip_ids=skip_ids, root=root)
        chunks = sections_to_docs(split_at_headings(text))
        if page_docs:
            chunks = chunks[:page_docs]
        for i, c in enumerate(chunks):
            docs.append(make(short, pkg, t.rel(pkg, f) + (f"#{i + 1}" if len(chunks) > 1 else ""), kind, c))
    return docs


SPHINX_SKIP = {"headerlink", "sphinxsidebar", "related", "footer", "navigation", "toctree-wrapper"}
DOCBOOK_SKIP = {"navheader", "navfooter", "toc", "docnav", "breadcrumbs", "list-of-tables",
                "list-of-figures", "list-of-examples", "legalnotice"}


def python_doc(sub, kind):
    def run(t):
        return html_pages(t, "pydoc", "python3.11-doc", f"usr/share/doc/python3.11/html/{sub}/*.html", kind,
                          skip_classes=SPHINX_SKIP, root=("role", "main"),
                          exclude=(r"^index\.html$", r"^genindex"), page_docs=4)
    run.__name__ = f"python_doc[{sub}]"
    return run


def ex_debian_handbook(t):
    return html_pages(t, "dhb", "debian-handbook", "usr/share/doc/debian-handbook/html/en-US/*.html", "manual",
                      skip_classes=DOCBOOK_SKIP, skip_ids={"banner"},
                      exclude=(r"^index\.html$", r"^(pr|ix)", r"^(legalnotice|bookinfo)"), page_docs=4)


def ex_debian_reference(t):
    return html_pages(t, "dref", "debian-reference-en", "usr/share/debian-reference/ch*.en.html", "manual",
                      skip_classes=DOCBOOK_SKIP)


def ex_sphinx_or_docbook(short, pkg, pattern, kind, exclude=(), sphinx=False):
    def run(t):
        if sphinx:
            return html_pages(t, short, pkg, pattern, kind, skip_classes=SPHINX_SKIP, root=("role", "main"),
                              exclude=exclude)
        return html_pages(t, short, pkg, pattern, kind, skip_classes=DOCBOOK_SKIP, exclude=exclude)
    run.__name__ = _label(locals())
    return run


def docbook_files(t, short, pkg, pattern, kind, select=None):
    docs = []
    for f in t.files(pkg, pattern):
        src = read_text(f)
        if select and not re.search(select, src[:400]):
            continue
        text = markup_to_text(expand_entities(src))
        chunks = sections_to_docs(split_at_headings(text))
        for i, c in enumerate(chunks):
            docs.append(make(short, pkg, t.rel(pkg, f) + (f"#{i + 1}" if len(chunks) > 1 else ""), kind, c))
    return docs


def ex_kstars(t):
    # the AstroInfo articles ("ai-*" sections) are short astronomy lessons with exercises
    return docbook_files(t, "kstars", "kstars-data", "usr/share/doc/HTML/en/kstars/*.docbook", "tutorial",
                         select=r'<sect1 id="ai-')


def ex_kde_handbook(short, pkg, app):
    def run(t):
        return docbook_files(t, short, pkg, f"usr/share/doc/HTML/en/{app}/*.docbook", "manual")
    run.__name__ = _label(locals())
    return run


def ex_stellarium(t):
    """Sky-culture and landscape descriptions. Each sky culture names its own upstream licence in
    info.ini: keep only GPL and CC BY-SA ones (no NC, no ND, since documents are excerpts)."""
    docs = []
    for sub in ("skycultures", "landscapes"):
        for f in t.files("stellarium-data", f"usr/share/stellarium/{sub}/*/description.en.utf8"):
            licence = LICENCES["stellarium-data"]
            ini = f.parent / "info.ini"
            if ini.exists():
                m = re.search(r"(?im)^license\s*=\s*(.+)$", ini.read_text(encoding="utf-8", errors="replace"))
                upstream = m.group(1).strip() if m else ""
                if not re.search(r"GPL|BY-SA", upstream) or re.search(r"\bNC\b|-NC|\bND\b|-ND", upstream):
                    continue
                licence = f"{licence} (upstream: {upstream})"
            text = markup_to_text(read_text(f))
            chunks = sections_to_docs(split_at_headings(text))
            for i, c in enumerate(chunks[:3]):
                docs.append(make("stel", "stellarium-data", t.rel("stellarium-data", f) +
                                 (f"#{i + 1}" if len(chunks) > 1 else ""), "article", c, licence))
    return docs


def ex_gimp(t):
    pat = "usr/share/gimp/2.0/help/en/*.html"
    docs = html_pages(t, "gimp", "gimp-help-en", pat, "manual", skip_classes=DOCBOOK_SKIP,
                      exclude=(r"^(index|gimp-help|gimp-help-index)\.html$",))
    for d in docs:   # tutorials and concepts are the prose; the rest are dialog references
        if re.search(r"tutorial|concepts|glossary|using", d["path"]):
            d["kind"] = "tutorial"
    return docs


def ex_gnucash(t):
    return html_pages(t, "gnucash", "gnucash-docs", "usr/share/doc/gnucash-docs/gnucash-guide-en/*.html",
                      "tutorial", skip_classes=DOCBOOK_SKIP, exclude=(r"^index\.html$",))


def ex_postgres(t):
    return html_pages(t, "pgdoc", "postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html/tutorial*.html",
                      "tutorial", skip_classes=DOCBOOK_SKIP | {"navheader", "navfooter"})


def ex_r_doc(t):
    docs = []
    for name in ("R-intro", "R-FAQ"):
        docs += html_pages(t, "rdoc", "r-doc-html", f"usr/share/R/doc/manual/{name}.html",
                           "tutorial" if name == "R-intro" else "faq",
                           skip_classes={"header", "contents", "shortcontents", "footnote", "index-cp"})
    return docs


# ------------------------------------------------------------- info manuals

def info_nodes(paths: list[Path]):
    """Yield (node_name, body) for every node of an info manual (all its parts)."""
    for f in paths:
        for part in read_text(f).split("\x1f")[1:]:
            part = part.lstrip("\n")
            if part.startswith(("Tag Table", "Indirect:", "End Tag Table", "\nTag Table")):
                continue
            head, _, body = part.partition("\n")
            m = re.search(r"Node: ([^,\n]+)", head)
            if not m:
                continue
            body = re.sub(r"\n\* Menu:.*", "", body, flags=re.S)      # trailing menus are link lists
            yield m.group(1).strip(), body


def info_manual(short, pkg, pattern, kind="manual", skip_nodes=r"^(Top|Index|.*Index|GNU Free Documentation License|Copying.*|GNU General Public License)$"):
    def run(t):
        def order(p):
            m = re.search(r"-(\d+)\.gz$", p.name)
            return int(m.group(1)) if m else 0
        paths = sorted(t.files(pkg, pattern), key=order)
        docs, buf, names = [], "", []
        for name, body in info_nodes(paths):
            if re.match(skip_nodes, name):
                continue
            body = tidy(body)
            if not body:
                continue
            names.append(name)
            buf = f"{buf}\n\n{body}" if buf else body
            if len(buf) >= 900:
                for i, c in enumerate(pack(paragraphs(buf))[:2]):
                    docs.append(make(short, pkg, f"{t.rel(pkg, paths[0])} node {names[0]!r}" +
                                     (f"#{i + 1}" if i else ""), kind, c))
                buf, names = "", []
        return docs
    run.__name__ = _label(locals())
    return run


# ---------------------------------------------------------------- man pages

def render_man(path: Path) -> str:
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
    try:
        r = subprocess.run(["man", "-l", "-E", "UTF-8", "-P", "cat", str(path)], env=env,
                           capture_output=True, timeout=60)
        out = subprocess.run(["col", "-bx"], input=r.stdout, capture_output=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return ""
    return out.decode("utf-8", errors="replace")


def man_pages(short, pkgs, sections="1578", per_page=2, max_pages=200):
    def run(t):
        docs = []
        pages = [(pkg, f) for pkg in pkgs for f in t.files(pkg, "usr/share/man/man*/*.gz")
                 if f.parent.name[-1:] in sections]
        # rendering is the slow part: render a fixed, hash-picked subset only
        for pkg, f in pick(pages, max_pages, key=lambda pf: str(pf[1].relative_to(t.cache))):
            text = render_man(f)
            lines = text.split("\n")
            if len(lines) > 2:   # drop the running header and footer lines
                lines = lines[1:-2] if lines[-1].strip() == "" else lines[1:-1]
            chunks = pack(paragraphs("\n".join(lines)))[:per_page]
            for i, c in enumerate(chunks):
                docs.append(make(short if len(pkgs) == 1 else f"man-{pkg}", pkg,
                                 t.rel(pkg, f) + (f"#{i + 1}" if i else ""), "manpage", c))
        return docs
    run.__name__ = _label(locals())
    return run


# ------------------------------------------------------------ perl / git / vim

def ex_perl(t):
    keep = r"^(perlintro|perlretut|perlreftut|perlootut|perlfaq\d|perlstyle|perlsyn|perldata|perlsub|perlpacktut|perlperf|perltrap|perlopentut|perlrequick|perldebtut|perlunitut|perlhist|perlpod|perlnewmod|perlbook|perlcommunity|perlmodstyle|perlthrtut|perlunifaq|perlpragma)\.pod$"
    docs = []
    for f in t.files("perl-doc", "usr/share/perl/*/pod/*.pod"):
        if not re.match(keep, f.name):
            continue
        out = subprocess.run(["pod2text", "-w", "78", str(f)], capture_output=True, timeout=60).stdout
        text = out.decode("utf-8", errors="replace")
        text = re.sub(r"\n(?=[A-Z][^\n]*\n)", "\n" + HEAD, "\n" + text)   # unindented lines are headings
        text = re.sub(r"(?m)^    ", "", text)                              # body text is indented by 4
        chunks = sections_to_docs(split_at_headings(text))
        for i, c in enumerate(chunks):
            docs.append(make("perldoc", "perl-doc", t.rel("perl-doc", f) + f"#{i + 1}",
                             "faq" if "faq" in f.name else "tutorial", c))
    return docs


def asciidoc_sections(text: str) -> list[str]:
    text = re.sub(r"\n([^\n]+)\n[=\-~^]{3,}\n", lambda m: "\n" + HEAD + m.group(1) + "\n", "\n" + text)
    text = re.sub(r"\n={1,4} ", "\n" + HEAD, text)
    return split_at_headings(text)


def ex_git(t):
    docs = []
    base = "usr/share/doc/git-doc/"
    for name in ("user-manual.txt", "gittutorial.txt", "gittutorial-2.txt", "gitcore-tutorial.txt",
                 "giteveryday.txt", "gitworkflows.txt", "gitglossary.txt", "gitfaq.txt", "gitcvs-migration.txt",
                 "gitnamespaces.txt", "gitsubmodules.txt", "gitrevisions.txt"):
        for f in t.files("git-doc", base + name):
            chunks = sections_to_docs(asciidoc_sections(read_text(f)))
            for i, c in enumerate(chunks):
                docs.append(make("gitdoc", "git-doc", t.rel("git-doc", f) + f"#{i + 1}", "tutorial", c))
    return docs


def ex_git_howto(t):
    docs = []
    for f in t.files("git-doc", "usr/share/doc/git-doc/howto/*.txt"):   # mailing-list messages kept as how-tos
        chunks = pack(paragraphs(read_text(f)))[:2]
        for i, c in enumerate(chunks):
            docs.append(make("gitmail", "git-doc", t.rel("git-doc", f) + (f"#{i + 1}" if i else ""), "mailing-list", c))
    return docs


def ex_vim(t):
    docs = []
    for f in t.files("vim-runtime", "usr/share/vim/vim90/doc/*.txt"):
        text = read_text(f)
        secs = re.split(r"\n={20,}\n", text)
        chunks = sections_to_docs(secs)
        chunks = chunks[:3]
        for i, c in enumerate(chunks):
            kind = "tutorial" if f.name.startswith("usr_") else "help"
            docs.append(make("vim", "vim-runtime", t.rel("vim-runtime", f) + f"#{i + 1}", kind, c))
    return docs


def ex_gnome(t):
    docs = []
    for f in t.files("gnome-user-docs", "usr/share/help/C/gnome-help/*.page"):
        text = markup_to_text(expand_entities(read_text(f)))
        chunks = sections_to_docs(split_at_headings(text))[:2]
        for i, c in enumerate(chunks):
            docs.append(make("gnome", "gnome-user-docs", t.rel("gnome-user-docs", f) + (f"#{i + 1}" if i else ""),
                             "help", c))
    # single pages are short: merge neighbours (same topic prefix) into one document
    merged, cur = [], None
    for d in docs:
        prefix = Path(d["path"]).name.split("-")[0]
        if cur and cur["_p"] == prefix and len(cur["text"]) < MIN_CHARS + 300 and \
                len(cur["text"]) + len(d["text"]) < MAX_CHARS:
            cur["text"] += "\n\n" + d["text"]
            cur["path"] += " + " + Path(d["path"]).name
        else:
            if cur:
                merged.append(cur)
            cur = Doc(d, _p=prefix)
    if cur:
        merged.append(cur)
    for d in merged:
        d.pop("_p", None)
    return merged


def ex_plain_text(short, pkg, pattern, kind, per_file=3, splitter=None):
    def run(t):
        docs = []
        for f in t.files(pkg, pattern):
            text = tidy(read_text(f))
            chunks = sections_to_docs(splitter(text)) if splitter else pack(paragraphs(text))
            for i, c in enumerate(chunks[:per_file]):
                docs.append(make(short, pkg, t.rel(pkg, f) + (f"#{i + 1}" if len(chunks) > 1 else ""), kind, c))
        return docs
    run.__name__ = _label(locals())
    return run


# ------------------------------------------------------- glossaries and dictionaries

def ex_kalzium(t):
    docs = []
    for name in ("knowledge", "tools"):
        f = t.root("kalzium-data") / f"usr/share/kalzium/data/{name}.xml"
        entries = []
        for item in ET.parse(f).getroot().iter("item"):
            n, d = item.findtext("name", "").strip(), re.sub(r"\s+", " ", item.findtext("desc", "")).strip()
            d = d.replace("[br]", "\n").replace("[sup]", "^").replace("[/sup]", "")
            d = re.sub(r"\[/?\w+\]", "", d)   # [sub], [b], [i] markup of the Kalzium glossary
            if n and d:
                entries.append(f"{n}\n{d}")
        for i, c in enumerate(pack(entries, target=1300)):
            docs.append(make("kalzium", "kalzium-data", t.rel("kalzium-data", f) + f"#{i + 1}", "glossary", c))
    return docs


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + B64.index(ch)
    return n


def dict_entries(t: Tree, pkg: str, name: str):
    root = t.root(pkg) / "usr/share/dictd"
    data = gzip.decompress((root / f"{name}.dict.dz").read_bytes())
    seen = set()
    for line in (root / f"{name}.index").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        off, ln = b64num(parts[1]), b64num(parts[2])
        if off in seen:
            continue
        seen.add(off)
        yield parts[0], data[off:off + ln].decode("utf-8", errors="replace")


def ex_dict(short, pkg, name, group_target=2200, kind="dictionary"):
    def run(t):
        entries = list(dict_entries(t, pkg, name))   # index (alphabetical) order
        docs, buf, first = [], [], None
        for word, body in entries:
            body = tidy(body)
            if not buf:
                first = word
            buf.append(body)
            if sum(len(b) for b in buf) >= group_target:
                docs.append(make(short, pkg, f"/usr/share/dictd/{name}.dict.dz entries {first!r}..{word!r}",
                                 kind, "\n\n".join(buf)))
                buf = []
        return docs
    run.__name__ = _label(locals())
    return run


def ex_freeciv(t):
    f = t.root("freeciv-data") / "usr/share/games/freeciv/helpdata.txt"
    src = read_text(f)
    docs = []
    for m in re.finditer(r"\[help_(\w+)\]\s*\n(.*?)(?=\n\[help_|\Z)", src, flags=re.S):
        block = m.group(2)
        name = re.search(r'name\s*=\s*_\("\?help:([^"]*)"\)', block)
        texts = re.findall(r'_\("\\?\n?(.*?)"\)', block, flags=re.S)
        paras = []
        for s in texts[1:] if name else texts:
            s = s.replace("\\\n", "").replace("\\n", "\n").replace('\\"', '"').strip()
            if s:
                paras.append(s)
        if not paras:
            continue
        title = name.group(1).strip() if name else m.group(1)
        for i, c in enumerate(pack([title] + paras)):
            docs.append(make("freeciv", "freeciv-data", f"/usr/share/games/freeciv/helpdata.txt [help_{m.group(1)}]" +
                             (f"#{i + 1}" if i else ""), "help", c))
    # merge the short nodes pairwise so they reach the minimum length
    out, cur = [], None
    for d in docs:
        if cur and len(cur["text"]) < MIN_CHARS + 200 and len(cur["text"]) + len(d["text"]) < MAX_CHARS:
            cur["text"] += "\n\n" + d["text"]
            cur["path"] += " + " + d["path"].split(" ", 1)[1]
        else:
            if cur:
                out.append(cur)
            cur = Doc(d)
    if cur:
        out.append(cur)
    return out


# ----------------------------------------------------------- low-value sources

FORTUNE_SKIP = {"ethnic", "men-women", "drugs", "love"}


def ex_fortunes(short, pkg):
    def run(t):
        docs = []
        for f in t.files(pkg, "usr/share/games/fortunes/*"):
            if f.suffix or f.name in FORTUNE_SKIP:
                continue
            cookies = [c.strip("\n") for c in read_text(f).split("\n%\n") if c.strip()]
            buf = []
            for c in cookies:
                buf.append(c)
                if sum(len(b) + 3 for b in buf) >= 1100:
                    docs.append(make(short, pkg, t.rel(pkg, f) + f" cookies {len(docs)}", "fortune", "\n%\n".join(buf)))
                    buf = []
        return docs
    run.__name__ = _label(locals())
    return run


def changelog_entries(text: str) -> list[str]:
    return [e for e in re.split(r"\n(?=\S+ \([^)]*\) [^;\n]*; urgency=)", text) if e.strip()]


def ex_changelogs(t):
    docs = []
    for pkg in sorted(DEBS):
        for f in t.files(pkg, "usr/share/doc/*/changelog.Debian.gz"):
            chunks = pack(changelog_entries(read_text(f)))[:3]
            for i, c in enumerate(chunks):
                docs.append(make(f"chlog-{pkg}", pkg, t.rel(pkg, f) + f"#{i + 1}", "changelog", c))
    return docs


def ex_upstream_news(t):
    docs = []
    for pkg in sorted(DEBS):
        pats = ["usr/share/doc/*/NEWS.gz", "usr/share/doc/*/NEWS", "usr/share/doc/*/changelog.gz",
                "usr/share/doc/*/NEWS.Debian.gz", "usr/share/doc/*/NEWS-*.gz",
                "usr/share/doc/*/NEWS.md.gz", "usr/share/doc/*/RELEASE_NOTES*", "usr/share/doc/*/CHANGES*"]
        for pat in pats:
            for f in t.files(pkg, pat):
                chunks = pack(paragraphs(read_text(f)))[:2]
                kind = "changelog" if "changelog" in f.name or "CHANGES" in f.name else "news"
                for i, c in enumerate(chunks):
                    docs.append(make(f"news-{pkg}", pkg, t.rel(pkg, f) + f"#{i + 1}", kind, c))
    return docs


def ex_copyright(t):
    docs = []
    for pkg in sorted(DEBS):
        for f in t.files(pkg, "usr/share/doc/*/copyright"):
            text = read_text(f)
            chunks = pack(paragraphs(text))
            if chunks:
                docs.append(make(f"copy-{pkg}", pkg, t.rel(pkg, f), "copyright", chunks[0]))
    return docs


NON_ENGLISH_NAME = re.compile(r"\.(ca|de|es|fr|it|ja|ko|nl|pl|pt|ru|sv|zh)(_[A-Z]{2})?(\.gz)?$")


def ex_readmes(t):
    docs = []
    skip_pkgs = {"python3.11-doc", "debian-handbook", "gimp-help-en"}
    for pkg in sorted(DEBS):
        if pkg in skip_pkgs:
            continue
        for pat in ("usr/share/doc/*/README*", "usr/share/doc/*/FAQ*", "usr/share/doc/*/TODO*",
                    "usr/share/doc/*/NOTES*", "usr/share/doc/*/examples/README*"):
            for f in t.files(pkg, pat):
                if f.name.endswith((".html", ".pdf", ".pdf.gz")) or NON_ENGLISH_NAME.search(f.name):
                    continue
                chunks = pack(paragraphs(read_text(f)))[:2]
                kind = "faq" if f.name.startswith("FAQ") else "readme"
                for i, c in enumerate(chunks):
                    docs.append(make(f"readme-{pkg}", pkg, t.rel(pkg, f) + (f"#{i + 1}" if i else ""), kind, c))
    return docs


def ex_configs(t):
    docs = []
    for pkg in sorted(DEBS):
        paths = t.files(pkg, "etc/**/*") + t.files(pkg, "usr/share/postfix/*.dist") + \
            t.files(pkg, "usr/share/samba/smb.conf")
        for f in paths:
            try:
                text = f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if len(text) < 600 or not lines or text.startswith("#!"):
                continue
            comments = sum(1 for ln in lines if ln.lstrip().startswith(("#", ";", "//")))
            if comments / len(lines) < 0.4:
                continue
            chunks = pack(paragraphs(text))[:2]
            for i, c in enumerate(chunks):
                docs.append(make(f"conf-{pkg}", pkg, t.rel(pkg, f) + (f"#{i + 1}" if i else ""), "config", c))
    return docs


def ex_licences(t):
    docs = []
    for f in t.files("base-files", "usr/share/common-licenses/*"):
        for i, c in enumerate(pack(paragraphs(read_text(f)))[:2]):
            docs.append(make("lic", "base-files", t.rel("base-files", f) + f"#{i + 1}", "licence", c))
    return docs


def ex_wordlist(t):
    f = t.root("wamerican") / "usr/share/dict/american-english"
    words = f.read_text(encoding="utf-8", errors="replace").split("\n")
    docs = []
    for start in range(0, len(words), 5000):
        chunk = "\n".join(words[start:start + 300])
        docs.append(make("words", "wamerican", f"/usr/share/dict/american-english lines {start + 1}-{start + 300}",
                         "list", chunk))
    return docs


def ex_spam(t):
    docs = []
    for f in t.files("spamassassin", "usr/share/doc/spamassassin/examples/sample-*.txt"):
        for i, c in enumerate(pack(paragraphs(read_text(f)))[:2]):
            docs.append(make("spam", "spamassassin", t.rel("spamassassin", f) + (f"#{i + 1}" if i else ""),
                             "email", c))
    return docs


DESC_FIELDS = ("Package", "Version", "Installed-Size", "Maintainer", "Architecture", "Depends", "Section",
               "Priority", "Homepage", "Description")


def ex_descriptions(t):
    """Package records from `apt-cache show` (cached as descriptions.txt), three or so a document."""
    f = t.cache / "descriptions.txt"
    stanzas = [s for s in read_text(f).split("\n\n") if s.strip()]
    recs = []
    for s in stanzas:
        fields, cur = {}, None
        for ln in s.split("\n"):
            if ln.startswith(" ") and cur:
                fields[cur] += "\n" + ln
            elif ":" in ln:
                cur, _, v = ln.partition(":")
                fields[cur] = v.strip()
        if "Description" not in fields and "Description-en" in fields:
            fields["Description"] = fields["Description-en"]
        recs.append("\n".join(f"{k}: {fields[k]}" for k in DESC_FIELDS if k in fields))
    docs, buf = [], []
    for r in recs:
        buf.append(r)
        if sum(len(b) for b in buf) >= 1400:
            name = buf[0].split("\n")[0].split(": ")[1]
            docs.append(Doc(src_short="desc", pkg="(Packages index)", path=f"apt-cache show {name} ... ({len(buf)} records)",
                            kind="description", text=tidy("\n\n".join(buf)),
                            licence="per-package (Debian package descriptions, see each package's copyright)"))
            buf = []
    return docs


# ---------------------------------------------------------------- the plan

def txt_sections(text):
    return re.split(r"\n(?=[A-Z0-9][^\n]{2,70}\n[-=*~]{3,}\n)", text)


# (extractor, quota, value tier) -- the tier is our judgement of the source type, not a score
PLAN = [
    # high
    (python_doc("tutorial", "tutorial"), 34, "high"),
    (python_doc("howto", "tutorial"), 24, "high"),
    (python_doc("faq", "faq"), 12, "high"),
    (python_doc("library", "manual"), 25, "high"),
    (python_doc("reference", "manual"), 5, "high"),
    (ex_debian_handbook, 60, "high"),
    (ex_debian_reference, 30, "high"),
    (ex_kstars, 40, "high"),
    (ex_stellarium, 35, "high"),
    (ex_gimp, 25, "high"),
    (ex_perl, 35, "high"),
    (ex_git, 26, "high"),
    (ex_postgres, 12, "high"),
    (ex_r_doc, 18, "high"),
    (info_manual("guile", "guile-3.0-doc", "usr/share/info/guile-3.0/guile.info*.gz"), 10, "high"),
    (info_manual("lily", "lilypond-doc", "usr/share/info/lilypond-learning.info*.gz", kind="tutorial"), 14, "high"),
    (info_manual("maxima", "maxima-doc", "usr/share/info/maxima.info*.gz"), 8, "high"),
    (ex_gnucash, 15, "high"),
    (ex_kalzium, 12, "high"),
    (ex_kde_handbook("step", "step", "step"), 8, "high"),
    (ex_kde_handbook("kturtle", "kturtle", "kturtle"), 8, "high"),
    (ex_kde_handbook("kbruch", "kbruch", "kbruch"), 4, "high"),
    (ex_kde_handbook("kmplot", "kmplot", "kmplot"), 5, "high"),
    (ex_kde_handbook("kig", "kig", "kig"), 5, "high"),
    (ex_kde_handbook("marble", "marble-data", "marble"), 5, "high"),
    (ex_kde_handbook("kgeo", "kgeography-data", "kgeography"), 3, "high"),
    (ex_kde_handbook("gcompris", "gcompris-qt-data", "gcompris-qt"), 6, "high"),
    # mid
    (man_pages("man", ["manpages"], sections="1457"), 55, "mid"),
    (man_pages("mandev", ["manpages-dev"], sections="23"), 18, "mid"),
    (man_pages("man", ["coreutils", "grep", "sed", "gzip", "diffutils", "findutils", "bc", "ed", "units",
                       "time", "tar", "bash", "nano", "openssh-client", "openssh-server", "curl", "wget",
                       "rsync", "less", "procps", "util-linux", "logrotate", "cron", "sudo", "git",
                       "adduser", "login", "passwd", "sqlite3", "make", "gawk", "rsyslog", "lighttpd",
                       "postfix", "apache2", "inkscape", "fortunes", "spamassassin", "vim-common"],
               per_page=1), 55, "mid"),
    (ex_vim, 60, "mid"),
    (info_manual("coreutils", "coreutils", "usr/share/info/coreutils.info*.gz"), 14, "mid"),
    (info_manual("grep", "grep", "usr/share/info/grep.info*.gz"), 8, "mid"),
    (info_manual("sed", "sed", "usr/share/info/sed.info*.gz"), 8, "mid"),
    (info_manual("find", "findutils", "usr/share/info/find.info*.gz"), 8, "mid"),
    (info_manual("diff", "diffutils", "usr/share/info/diffutils.info*.gz"), 6, "mid"),
    (info_manual("gzip", "gzip", "usr/share/info/gzip.info*.gz"), 4, "mid"),
    (info_manual("bc", "bc", "usr/share/info/bc.info*.gz"), 4, "mid"),
    (info_manual("units", "units", "usr/share/info/units.info*.gz"), 5, "mid"),
    (info_manual("bashref", "bash-doc", "usr/share/info/bash.info*.gz"), 15, "mid"),
    (ex_sphinx_or_docbook("dfaq", "debian-faq", "usr/share/doc/debian/FAQ/*.en.html", "faq",
                          exclude=(r"^index",)), 28, "mid"),
    (ex_plain_text("docdeb", "doc-debian", "usr/share/doc/debian/*.gz", "policy", per_file=2), 12, "mid"),
    (ex_sphinx_or_docbook("devref", "developers-reference", "usr/share/developers-reference/*.html", "manual",
                          exclude=(r"^(index|genindex|search|developers-reference)",), sphinx=True), 15, "mid"),
    (ex_sphinx_or_docbook("maint", "maint-guide", "usr/share/doc/maint-guide/html/*.en.html", "manual",
                          exclude=(r"^index",)), 15, "mid"),
    (ex_sphinx_or_docbook("policy", "debian-policy", "usr/share/doc/debian-policy/policy.html/*.html", "policy",
                          exclude=(r"^(index|genindex|search)",), sphinx=True), 15, "mid"),
    (ex_gnome, 32, "mid"),
    (ex_readmes, 40, "mid"),
    (ex_freeciv, 15, "mid"),
    (ex_git_howto, 10, "mid"),
    (ex_dict("jargon", "dict-jargon", "jargon"), 20, "mid"),
    (ex_dict("gcide", "dict-gcide", "gcide"), 20, "mid"),
    # low
    (ex_changelogs, 115, "low"),
    (ex_upstream_news, 70, "low"),
    (ex_copyright, 60, "low"),
    (ex_descriptions, 60, "low"),
    (ex_fortunes("fortune", "fortunes"), 80, "low"),
    (ex_fortunes("fortmin", "fortunes-min"), 20, "low"),
    (ex_configs, 45, "low"),
    (ex_licences, 12, "low"),
    (ex_dict("devil", "dict-devil", "devil", group_target=1500), 12, "low"),
    (ex_dict("elements", "dict-elements", "elements", group_target=1200), 4, "low"),
    (ex_spam, 4, "low"),
    (ex_wordlist, 4, "low"),
]


# ------------------------------------------------------------------ fetching

def fetch(cache: Path, download: bool):
    debdir = cache / "deb"
    debdir.mkdir(parents=True, exist_ok=True)
    for pkg, ver in sorted(DEBS.items()):
        have = sorted(debdir.glob(f"{pkg}_*.deb"))
        if not have and download:
            subprocess.run(["apt-get", "download", f"{pkg}={ver}"], cwd=debdir, check=True)
            have = sorted(debdir.glob(f"{pkg}_*.deb"))
        if not have:
            sys.exit(f"missing {pkg}_{ver}.deb in {debdir} (run with --download)")
        dest = cache / "x" / pkg
        if not dest.exists():
            dest.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(have[0]), str(dest)], check=True)
    desc = cache / "descriptions.txt"
    if not desc.exists():
        if not download:
            sys.exit(f"missing {desc} (run with --download)")
        # a fixed, spread-out sample of package records: the 400 names with the smallest hash
        names = subprocess.run(["apt-cache", "pkgnames"], capture_output=True, text=True, check=True).stdout.split()
        names = sorted(n for n in names if not n.endswith(("-dbg", "-dbgsym")) and ":" not in n)
        names = sorted(names, key=lambda n: stable_key("desc", n))[:400]
        # long descriptions live in Translation-en: `apt-get update -o Acquire::Languages=en` first
        out = subprocess.run(["apt-cache", "-o", "Acquire::Languages=en", "show", "--no-all-versions"] + sorted(names),
                             capture_output=True, text=True).stdout
        desc.write_text(out)


def deb_version(cache: Path, pkg: str) -> str:
    f = sorted((cache / "deb").glob(f"{pkg}_*.deb"))[0]
    return subprocess.run(["dpkg-deb", "-f", str(f), "Version"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- dedup, ids

def shingles(text: str) -> set[int]:
    words = re.findall(r"\w+", text.lower())
    return {zlib.crc32(" ".join(words[i:i + 5]).encode()) for i in range(max(1, len(words) - 4))}


def dedup(docs: list[Doc]) -> list[Doc]:
    """Drop exact copies (after whitespace folding) and near copies (5-word shingle Jaccard >= 0.7)."""
    seen, kept, sigs = set(), [], []
    buckets = collections.defaultdict(list)
    for d in docs:
        norm = re.sub(r"\s+", " ", d["text"].lower()).strip()
        h = hashlib.sha1(norm.encode()).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        sh = shingles(norm)
        # candidate pairs: documents sharing any of the 8 smallest shingle hashes
        mins = sorted(sh)[:8]
        dup = False
        for m in mins:
            for j in buckets[m]:
                other = sigs[j]
                if len(sh & other) / max(1, len(sh | other)) >= 0.7:
                    dup = True
                    break
            if dup:
                break
        if dup:
            continue
        sigs.append(sh)
        for m in mins:
            buckets[m].append(len(sigs) - 1)
        kept.append(d)
    return kept


def english_ok(d: Doc) -> bool:
    """A cheap guard against non-English text: few letters outside ASCII."""
    letters = [ch for ch in d["text"] if ch.isalpha()]
    return sum(ord(ch) > 127 for ch in letters) <= 0.3 * max(1, len(letters))


def prose_ok(d: Doc) -> bool:
    """For manuals and tutorials, prefer prose: at least half of the characters are letters."""
    if d["kind"] not in ("manual", "tutorial", "faq", "article", "help"):
        return True
    text = d["text"]
    letters = sum(ch.isalpha() for ch in text)
    return letters / max(1, len(text)) >= 0.55


def build(cache: Path, out: Path, verbose: bool):
    t = Tree(cache)
    versions: dict[str, str] = {}
    final: list[Doc] = []
    per_pkg = collections.Counter()
    report = []
    for extractor, quota, tier in PLAN:
        name = getattr(extractor, "__name__", "?")
        cands = [d for d in extractor(t) if d["text"]]
        for d in cands:
            d["text"] = truncate(d["text"])
        cands = [d for d in cands if len(d["text"]) >= MIN_CHARS and prose_ok(d) and english_ok(d)]
        cands = dedup(cands)
        chosen = pick(cands, quota, key=lambda d: d["path"])
        room = []
        for d in chosen:
            if per_pkg[d["pkg"]] >= PER_PACKAGE_CAP:
                continue
            per_pkg[d["pkg"]] += 1
            d["tier"] = tier
            room.append(d)
        report.append((name, tier, len(cands), len(room)))
        final += room
    final = dedup(final)
    counters = collections.Counter()
    with out.open("w", encoding="utf-8") as fh:
        for d in final:
            counters[d["src_short"]] += 1
            pkg = d["pkg"]
            if pkg not in versions and pkg in DEBS:
                versions[pkg] = deb_version(cache, pkg)
            source = f"debian bookworm {pkg} {versions[pkg]}" if pkg in DEBS else \
                "debian bookworm main Packages + Translation-en index (apt-cache show, cached as descriptions.txt)"
            rec = {"id": f"{d['src_short']}-{counters[d['src_short']]}", "source": source, "path": d["path"],
                   "licence": d["licence"], "kind": d["kind"], "source_tier": d["tier"], "text": d["text"]}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if verbose:
        for name, tier, n, k in report:
            print(f"{name:28s} {tier:5s} candidates={n:5d} kept={k}", file=sys.stderr)
        tiers = collections.Counter(d["tier"] for d in final)
        print(f"total={len(final)} tiers={dict(tiers)} size={out.stat().st_size}", file=sys.stderr)
        for pkg, n in per_pkg.most_common(12):
            print(f"  {pkg}: {n}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("EDU_CACHE", "/tmp/edu-cache")))
    ap.add_argument("--out", type=Path, default=HERE / "pool.jsonl")
    ap.add_argument("--download", action="store_true", help="apt-get download what is missing from the cache")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    fetch(args.cache, args.download)
    build(args.cache, args.out, verbose=not args.quiet)


if __name__ == "__main__":
    main()

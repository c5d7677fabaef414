"""The OpenAI Batch API on the fake server: /v1/files (multipart upload), /v1/batches, /v1/files/{id}/content.

Shapes as OpenAI documents them (https://platform.openai.com/docs/guides/batch): a batch reads an uploaded
JSONL file of `{"custom_id", "method", "url", "body"}` lines, reports `validating` / `in_progress` for
`server.batch_polls` status checks, then `completed` with an output file of
`{"id", "custom_id", "response": {"status_code": 200, "body": <chat completion>}, "error": null}` lines and
an error file for the requests that failed (faults queued on the server apply to batch lines too).
Counters: `server.batches_created`, `server.files_uploaded`.
"""

from __future__ import annotations

import json
import time
from typing import Any


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """{field name: (filename, bytes)} of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, _, data = part.partition(b"\r\n\r\n")
        disposition = next((line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition")), "")
        params = dict(p.strip().split("=", 1) for p in disposition.split(";")[1:] if "=" in p)
        name = params.get("name", "").strip('"')
        filename = params.get("filename", "").strip('"') or None
        fields[name] = (filename, data.removesuffix(b"\r\n"))
    return fields


def _file_object(file_id: str, name: str, size: int, purpose: str) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()), "filename": name,
            "purpose": purpose, "status": "processed"}


def _batch_object(batch: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "object", "endpoint", "input_file_id", "completion_window", "status", "created_at", "output_file_id",
            "error_file_id", "request_counts", "metadata", "errors")
    return {k: batch.get(k) for k in keys}


class BatchAPI:
    """Mixed into FakeServer: `_batch_route` answers the Batch API paths, or returns None for other paths."""

    batch_polls = 1  # status checks that see the batch in progress before it completes
    batch_status = "completed"  # or "expired" (partial output) / "failed" (validation errors)
    batches_created = files_uploaded = 0

    def _batch_route(self, method: str, path: str, headers: dict, body: Any) -> tuple[int, Any] | None:
        if not hasattr(self, "files"):
            self.files: dict[str, tuple[str, bytes, str]] = {}
            self.batches: dict[str, dict[str, Any]] = {}
        if method == "POST" and path == "/v1/files":
            fields = parse_multipart(headers.get("content-type", ""), body if isinstance(body, bytes) else b"")
            if "file" not in fields:
                return 400, self._error("missing file", "invalid_request_error", param="file")
            name, data = fields["file"]
            purpose = fields.get("purpose", (None, b""))[1].decode()
            file_id = f"file-{len(self.files):04d}"
            self.files[file_id] = (name or "upload.jsonl", data, purpose)
            self.files_uploaded += 1
            return 200, _file_object(file_id, name or "upload.jsonl", len(data), purpose)
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            file_id = path.split("/")[3]
            if file_id not in self.files:
                return 404, self._error(f"No such File object: {file_id}", "invalid_request_error")
            return 200, self.files[file_id][1]
        if method == "POST" and path == "/v1/batches":
            return self._create_batch(body)
        if method == "GET" and path == "/v1/batches":
            data = [_batch_object(b) for b in reversed(self.batches.values())]
            return 200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": False}
        if method == "GET" and path.startswith("/v1/batches/"):
            batch = self.batches.get(path.split("/")[3])
            if batch is None:
                return 404, self._error("No such batch", "invalid_request_error")
            batch["polls"] += 1
            if batch["polls"] > self.batch_polls and batch["status"] == "in_progress":
                self._complete(batch)
            return 200, _batch_object(batch)
        return None

    def _create_batch(self, body: Any) -> tuple[int, Any]:
        file_id = body.get("input_file_id") if isinstance(body, dict) else None
        if file_id not in self.files:
            return 400, self._error(f"input file {file_id} not found", "invalid_request_error", param="input_file_id")
        batch_id = f"batch_{len(self.batches):04d}"
        lines = [json.loads(line) for line in self.files[file_id][1].splitlines() if line.strip()]
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "input_file_id": file_id,
            "completion_window": body.get("completion_window", "24h"), "status": "in_progress",
            "created_at": int(time.time()), "output_file_id": None, "error_file_id": None, "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "errors": None, "polls": 0, "lines": lines,
        }
        self.batches_created += 1
        return 200, _batch_object(self.batches[batch_id])

    def _complete(self, batch: dict[str, Any]) -> None:
        if self.batch_status == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "line 1: bad body", "line": 1}]}
            return
        lines = batch["lines"][: len(batch["lines"]) // 2] if self.batch_status == "expired" else batch["lines"]
        out, err = [], []
        for i, line in enumerate(lines):
            status, payload = self.batch_reply(line["body"])
            record = {"id": f"batch_req_{batch['id']}_{i}", "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": f"req_{i}", "body": payload}, "error": None}
            (out if status == 200 else err).append(json.dumps(record))
        self.served += len(lines)
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-{len(self.files):04d}"
                self.files[file_id] = (f"{batch['id']}_{name}.jsonl", ("\n".join(rows) + "\n").encode(), "batch_output")
                batch[name] = file_id
        batch["status"] = self.batch_status
        batch["request_counts"] = {"total": len(batch["lines"]), "completed": len(out), "failed": len(err)}

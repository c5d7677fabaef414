"""A scripted settings teacher for the fake server: paraphrases every seed three ways, and a judge that agrees
except on the paraphrases marked "mislabel" (tests and benchmarks/gen_throughput.py)."""

from __future__ import annotations

import json
import re


class ScriptedTeacher:
    """Paraphrases every seed three ways; the judge agrees except on the ones marked "mislabel"."""

    def __init__(self):
        self.labels: dict[str, dict] = {}

    def __call__(self, messages):
        text = messages[-1]["content"]
        if text.startswith("You write realistic requests"):
            seed = re.search(r'^The request: "(.*)"$', text, re.M).group(1)
            target = json.loads(re.search(r"^As a settings call: (.*)$", text, re.M).group(1))
            styles = re.findall(r"^- (\w+): ", text.split("one per style below")[1], re.M)
            paraphrases = [{"style": styles[0], "text": f"please {seed}"},
                           {"style": styles[1], "text": f"{seed} right now"},
                           {"style": styles[2], "text": f"mislabel {seed}"}]
            for p in paraphrases:
                self.labels[p["text"]] = target
            return json.dumps({"paraphrases": paraphrases})
        assert text.startswith("You label requests")
        answers = []
        for i, request in re.findall(r"^(\d+)\. (.*)$", text, re.M):
            label = self.labels[request]
            if request.startswith("mislabel"):
                answers.append({"i": int(i), "id": "none", "action": "none", "value": None})
            else:
                answers.append({"i": int(i), "id": label["id"], "action": label["action"], "value": label.get("value")})
        return json.dumps({"answers": answers})

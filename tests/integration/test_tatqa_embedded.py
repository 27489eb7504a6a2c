"""One real TAT-QA report end to end on the real embedded model (issue 27): the harness ingests the report (its
table under the paragraph that introduces it), asks one of its arithmetic questions with ``coa`` in the scoped
setting, and scores it with TAT-QA's metric. The bundled small model may get the number wrong; what is asserted is
what must hold whatever it writes: the search stayed in the report, every value a chain read is a cell or sentence
of that report, the answer a person reads is not a rendered chain, and the outcome is honest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conclave.workflows.evaluation import EvalConfig, run_eval

from conclave.settings import load_settings
from tests.conftest import SHARED_DATA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEV = SHARED_DATA / "tatqa" / "tatqa_dataset_dev.json"


def first_table_arithmetic_report() -> tuple[dict, dict]:
    """The first dev report with an arithmetic question answered from its table, with only that question."""
    for report in json.loads(DEV.read_text(encoding="utf-8")):
        for question in report["questions"]:
            if question["answer_type"] == "arithmetic" and question["answer_from"] == "table":
                return report, question
    raise AssertionError("no arithmetic table question in TAT-QA dev")


async def test_one_real_report_on_the_embedded_model(conclave_home: Path, tmp_path: Path) -> None:
    if not DEV.exists():
        pytest.skip(f"TAT-QA is not at {DEV} (CI clones have ../shared/data beside the repository)")
    report, question = first_table_arithmetic_report()
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{**report, "questions": [question]}]), encoding="utf-8")
    settings = load_settings(model="embedded", max_tokens=384, coa={"max_replans": 1})
    config = EvalConfig(dataset=f"tatqa:{path}", methods=["coa"], models=["embedded"], cache=False)
    result = await run_eval(config, settings)
    [record] = result.records
    uid = report["table"]["uid"]
    assert record.labels == {"answer_type": "arithmetic", "answer_from": "table", "scale": question["scale"]}
    # Scoped: every passage read came from the question's own report.
    assert record.retrieved_ids and all(i == uid or i.startswith(f"{uid}#") for i in record.retrieved_ids)
    # TAT-QA's own scores were computed against the gold answer and scale.
    assert set(record.scores) >= {"tatqa_em", "tatqa_f1"}
    assert record.scores["tatqa_em"]["value"] in (0.0, 1.0)
    # Every value a chain read comes from this report's table or paragraphs.
    cells = {" ".join(str(c).split()) for row in report["table"]["table"] for c in row if str(c).strip()}
    text = " ".join(p["text"] for p in report["paragraphs"])
    reads = [e for e in record.trace if e.get("kind") == "step_finished" and e.get("tool") == "read_value"]
    for step in reads:
        if step.get("status") != "ok" or not step.get("source"):
            continue
        # tools/values.py ValueSource.describe: "DOC, table ..., row ..., column ... (cell 'X')" or "DOC: sentence 'X'"
        source = step["source"]
        assert source.startswith(uid), source
        cell = re.search(r"\(cell '(.*)'\)$", source)
        sentence = re.search(r": sentence '(.*)'$", source)
        assert (cell and cell.group(1) in cells) or (sentence and sentence.group(1) in text), source
    # The answer a person reads is a sentence, never the filled-in chain ("[128 = 128] ... [floor(...) = 391]"); a
    # run with no answer says why (its last errors may quote the chain format).
    assert record.answer
    if record.value is not None:
        assert not re.search(r"\[[^\]]*=[^\]]*\]", record.answer), record.answer
    # Honest outcome: an answer with no value is not ok.
    assert record.ok == (record.value is not None) or record.error

"""The harness on real components: the embedded model on GSM8K dev items, and a data set's contexts in real Chroma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conclave.workflows.evaluation import EvalConfig, load_dataset, run_eval
from conclave.workflows.evaluation.records import EvalSample

from conclave.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_embedded_run_on_five_gsm8k_items_writes_every_output_and_repeats_from_cache(
    shared_data: Path, conclave_home: Path
) -> None:
    # Short answers keep this quick; the bundled 135M model is for plumbing, so accuracy is not asserted.
    settings = load_settings(max_tokens=48)
    config = EvalConfig(
        dataset=f"gsm8k:{shared_data / 'gsm8k' / 'dev.jsonl'}", methods=["direct"], models=["embedded"], limit=5
    )
    first = await run_eval(config, settings)

    folder = first.run_dir
    for name in (
        "items.jsonl",
        "summary.json",
        "report.md",
        "report.html",
        "manifest.json",
        "config.json",
        "status.json",
    ):
        assert (folder / name).stat().st_size > 0, name
    records = [EvalSample.model_validate_json(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    first_five = [item.id for item in load_dataset(config.dataset).items[:5]]
    # Written as each item finishes: the default engine (xllamacpp) runs as many at once as it has slots.
    assert sorted(r.item_id for r in records) == sorted(first_five)
    for record in records:
        assert record.ok, record.error
        assert record.answer.strip()
        assert record.completion_tokens > 0 and record.prompt_tokens > 0
        assert record.correct in (True, False)
        assert record.scores["numeric"]["value"] in (0.0, 1.0)
    assert first.backend_calls == {"embedded": 5}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["cells"][0]["items"] == 5 and summary["cells"][0]["model"] == "embedded"
    html = (folder / "report.html").read_text()
    assert html.count("<svg") == 3 and "gsm8k-test-1" in html

    second = await run_eval(config, settings)
    assert second.backend_calls == {"embedded": 0}
    assert second.summary["cached_units"] == 5
    assert {r.item_id: r.answer for r in second.records} == {r.item_id: r.answer for r in records}
    assert second.seconds < first.seconds


async def test_dataset_contexts_are_ingested_once_with_their_own_ids(tmp_path: Path, conclave_home: Path) -> None:
    from conclave.tools.store import KnowledgeStore
    from conclave.workflows.evaluation.knowledge import ensure_contexts

    squad = {
        "version": "1.1",
        "data": [
            {
                "title": "Owls",
                "paragraphs": [
                    {
                        "context": "Owls are birds of prey that hunt mostly at night. They have large forward-facing eyes.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "When do owls hunt?",
                                "answers": [{"text": "at night", "answer_start": 0}],
                            }
                        ],
                    },
                    {
                        "context": "The Sahara is the largest hot desert in the world, covering much of North Africa.",
                        "qas": [
                            {
                                "id": "q2",
                                "question": "Which is the largest hot desert?",
                                "answers": [{"text": "The Sahara"}],
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(squad))
    dataset = load_dataset(f"squad:{path}")
    assert [i.gold_ids for i in dataset.items] == [("Owls#0",), ("Owls#1",)]
    settings = load_settings()

    name, added = await ensure_contexts(settings, dataset)
    assert added == 2 and name.startswith("eval-squad-")
    again_name, again = await ensure_contexts(settings, dataset)
    assert (again_name, again) == (name, 0)

    store = KnowledgeStore.open(settings)
    passages = store.search_sync("largest hot desert", k=1, collection=name)
    assert passages[0].id == "Owls#1" and "Sahara" in passages[0].text

"""Flow files with revisions: writes are atomic, a stale base is refused whoever races, and the
history reads back after a crash cut its last line short."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.editor import Conflict, FlowExists, FlowFiles, UnknownFlow, etag, template_text


@pytest.fixture
def files(tmp_path: Path) -> FlowFiles:
    (tmp_path / "flows").mkdir()
    moments = iter(range(1000, 2000))
    return FlowFiles(tmp_path, clock=lambda: float(next(moments)))


def test_saving_at_once_on_one_base_lets_exactly_one_through(files: FlowFiles) -> None:
    original = template_text("greeting", "shop")
    files.save("shop", original, None, "first", "made")
    writers = 8
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def save(number: int) -> None:
        barrier.wait()
        try:
            files.save("shop", original.replace("Goodbye!", f"Bye {number}!"), etag(original),
                       f"editor {number}")
            outcome = f"saved {number}"
        except Conflict as conflict:
            outcome = "conflict" if conflict.base == original else "conflict without base"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=save, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = [outcome for outcome in outcomes if outcome.startswith("saved")]
    assert len(saved) == 1 and outcomes.count("conflict") == writers - 1
    winner = saved[0].split()[1]
    assert f"Bye {winner}!" in files.read("shop")
    history = files.revisions("shop")
    assert [revision.who for revision in history] == ["first", f"editor {winner}"]
    assert history[-1].etag == etag(files.read("shop"))


def test_a_new_flow_may_not_replace_one_and_a_save_needs_a_file(files: FlowFiles) -> None:
    files.save("shop", "flow: shop\n", None, "me")
    with pytest.raises(FlowExists):
        files.save("shop", "flow: shop\n", None, "me")
    with pytest.raises(UnknownFlow):
        files.save("other", "flow: other\n", etag("flow: other\n"), "me")
    with pytest.raises(ValueError):
        files.path("../shop")


def test_no_temporary_file_is_left_and_the_mode_is_kept(files: FlowFiles) -> None:
    files.save("shop", "flow: shop\n", None, "me")
    path = files.path("shop")
    path.chmod(0o640)
    files.save("shop", "flow: shop\n# more\n", etag("flow: shop\n"), "me")
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(item.name for item in path.parent.iterdir()) == [".revisions", "shop.yaml"]


def test_a_history_line_cut_short_is_skipped(files: FlowFiles) -> None:
    files.save("shop", "flow: shop\n", None, "me")
    log = files.flows / ".revisions" / "shop.jsonl"
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"number": 2, "at": 1')
    assert [revision.number for revision in files.revisions("shop")] == [1]
    # The next save counts on from the last whole revision.
    saved = files.save("shop", "flow: shop\n# two\n", etag("flow: shop\n"), "me")
    assert saved.number == 2
    assert saved.diff.endswith("+# two\n")


def test_reading_the_history_of_a_flow_never_saved_here_writes_nothing(files: FlowFiles) -> None:
    files.path("shop").write_text("flow: shop\n")
    assert files.revisions("shop") == []
    assert sorted(item.name for item in files.flows.iterdir()) == ["shop.yaml"]

"""`save:` JSONPath picks, and `${NAME}` expansion and redaction."""

from __future__ import annotations

import pytest

from engine.actions.jsonpaths import path_problem, pick, save
from engine.actions.secrets import MissingSecret, Secrets, references

ANSWER = {"slots": [{"label": "9am", "free": True}, {"label": "10am", "free": False}],
          "clinic": {"name": "Paws"}, "count": 2}


def test_save_picks_one_value_a_list_or_none() -> None:
    assert save(ANSWER, {"first": "$.slots[0].label", "all": "$.slots[*].label",
                         "name": "$.clinic.name", "missing": "$.nope.deeper",
                         "free": "$.slots[?@.free == true].label"}) == {
        "first": "9am", "all": ["9am", "10am"], "name": "Paws", "missing": None,
        "free": ["9am"]}
    assert pick("just text", "$") == "just text"
    assert pick(None, "$.a") is None


def test_a_bad_path_is_explained_in_one_line() -> None:
    problem = path_problem("$.slots[")
    assert problem and "\n" not in problem
    assert "starts with $" in (path_problem("slots[0]") or "")
    assert path_problem("$.slots[0].label") is None


def test_secrets_expand_only_where_sent_and_come_back_out_of_answers() -> None:
    secrets = Secrets({"TOKEN": "abcd-1234", "SHORT": "ab"})
    assert references("Bearer ${TOKEN} and ${SHORT}") == ["TOKEN", "SHORT"]
    assert secrets.expand("Bearer ${TOKEN}") == "Bearer abcd-1234"
    assert secrets.redact("echo: Bearer abcd-1234", ["TOKEN"]) == "echo: Bearer ${TOKEN}"
    # Too short to search for without replacing ordinary text.
    assert secrets.redact("about", ["SHORT"]) == "about"
    with pytest.raises(MissingSecret, match=r"\$\{UNSET\} is not set"):
        secrets.expand("${UNSET}")
    assert secrets.expand("$TOKEN and {TOKEN}") == "$TOKEN and {TOKEN}"  # only ${NAME}

"""The flow editor's core: checking a draft, writing it back with its comments, revisions of
flow files, templates for new flows, and traffic counts on a flow's graph. No HTTP here: the
routes are in engine/web/editor_api.py and engine/web/editor.py."""

from engine.editor.revisions import (
    Conflict,
    FlowExists,
    FlowFiles,
    Revision,
    UnknownFlow,
    etag,
    unified,
    valid_flow_id,
)
from engine.editor.roundtrip import RoundTripError, apply_data
from engine.editor.templates import TEMPLATES, template_text
from engine.editor.traffic import traffic
from engine.editor.validation import Checked, EditorProblem, check_text

__all__ = [
    "TEMPLATES",
    "Checked",
    "Conflict",
    "EditorProblem",
    "FlowExists",
    "FlowFiles",
    "Revision",
    "RoundTripError",
    "UnknownFlow",
    "apply_data",
    "check_text",
    "etag",
    "template_text",
    "traffic",
    "unified",
    "valid_flow_id",
]

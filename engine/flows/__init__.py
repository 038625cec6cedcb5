"""The flow language: reading, checking, compiling and drawing flows and personalities."""

from engine.flows.loader import LoadResult, load, load_project
from engine.flows.model import Edge, Flow, Node, Personality, Registry
from engine.flows.problems import Problem

__all__ = ["Edge", "Flow", "LoadResult", "Node", "Personality", "Problem", "Registry", "load",
           "load_project"]

"""Report labels: the paper's diagnosis ontologies, a rule-based and an LLM extractor, key findings, scoring."""

from .ontology import load_ontology
from .rules import RuleExtractor

__all__ = ["load_ontology", "RuleExtractor"]

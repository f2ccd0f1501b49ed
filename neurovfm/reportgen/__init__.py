"""Report generation (LLaVA-style model over frozen Vol-JEPA tokens) and its triage evaluation.

One module per job: perceiver/connector (the vision side), tokenizer/lm/prompt (the language side), data and
curation (training pairs), train and generate, metrics_text/triage/balanced/cost (evaluation) and
frontier_inputs (2D request payloads for frontier models). ``run`` holds the workflow steps.
"""

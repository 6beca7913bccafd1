"""Whole-pipeline runs, above the stages they drive: the demo (label -> distill -> evaluate -> index ->
attribute -> filter on the embedded defaults) and the toxicity-filtering experiment (its runner, report and
archive). Nothing below imports from here."""

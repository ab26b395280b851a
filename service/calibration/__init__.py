"""The matcher's calibration and its published measurements: the model card.

A calibration fixes the review threshold from a target false-match rate measured on
labelled photos, and the distance bands reviewers see; it is versioned per model id,
and the newest activated one of the active model is the one the service uses. An
evaluation report (`reunite evaluate --publish`) records how well the model did on a
stated data set, overall, by group and by age. The model card joins the two, and the
reviewers' standing notice takes its numbers from it.
"""

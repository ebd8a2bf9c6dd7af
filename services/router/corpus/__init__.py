"""Training and test data for the router's learned classifiers (see docs/classifiers.md).

``templates`` holds hand-written lead SMS templates (EN/ES) with slots, each
tagged with an intent and a sentiment; ``generate`` fills them with slot
values and SMS noise (typos, shorthand, casing, emoji, mixed language).
Every template belongs to the training side or the held-out test side by a
stable hash of its text, so the test set is made from templates the model
never saw, filled with another seed. ``handwritten_test.jsonl`` holds
messages written for evaluation only.
"""

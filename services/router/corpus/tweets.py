"""Short public-post style texts (tweet-like) for the sentiment model only.

Lead SMS are not the only text whose mood matters: people write to a business
the way they post, with @mentions, hashtags, links, emoji, sarcasm and
insults. These hand-written templates carry a sentiment and no intent (they
train and test sentiment only, never intent). They split into training and
test side by the same stable template hash as the lead templates. The
templates and their slot values are data: ``tweets.yaml``.
"""

from __future__ import annotations

import random
import re

from services.router.corpus.generate import Side, noise, on_side
from services.router.corpus.templates import load

TWEET_SLOTS, TWEETS = load("tweets")


def generate_tweets(side: Side, *, per_class: int, seed: int) -> list[tuple[str, str, str]]:
    """(text, language, sentiment): ``per_class`` per sentiment and language, templates of ``side``."""
    rng = random.Random(seed)
    slot = re.compile(r"\{(\w+)\}")
    out: list[tuple[str, str, str]] = []
    for sentiment in ("NEGATIVE", "NEUTRAL", "POSITIVE"):
        for language in ("en", "es"):
            templates = [t for t in TWEETS[sentiment][language] if on_side(t, side)]
            slots = TWEET_SLOTS[language]

            def fill(m: re.Match[str], slots: dict[str, list[str]] = slots) -> str:
                return rng.choice(slots[m.group(1)])

            for _ in range(per_class):
                text = slot.sub(fill, rng.choice(templates))
                out.append((noise(" ".join(text.split()), language, rng), language, sentiment))
    return out

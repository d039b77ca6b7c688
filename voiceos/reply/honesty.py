"""What the dialogue LM must not state as fact: the time, the date, the weather, the news. It cannot know them (it has
no clock, no calendar and no internet), and the 135M model makes them up when asked ("It's 12:30am.").

The skills answer most such questions from the clock or honestly (voiceos.skills); what they do not match reaches
the LM. Telling the LM the time, or that it cannot know, was measured on this model and made things worse
(benchmarks/README.md, "Skills": it then recited the note into unrelated replies, or answered everything with
condolences). So this is a guard, like the name guard: when the user asked about the time, the date, the weather or
the news, a sentence of the reply that states one is not said; if nothing is left, the reply says it cannot check.
"""

from __future__ import annotations

import re

CANNOT_CHECK = "I'm not sure: I can't check that from here."

_ABOUT_NOW = re.compile(
    r"\b(?:time|hour|clock|o'clock|late|early|morning|afternoon|evening|night|midnight|noon|lunchtime|"
    r"date|day|days|week|weekday|weekend|month|year|today|tonight|tomorrow|yesterday|christmas|birthday|"
    r"weather|rain|raining|snow|snowing|sunny|sun|cloudy|wind|windy|storm|temperature|degrees|hot|cold|warm|"
    r"umbrella|forecast|news|headlines|happened|happening|latest|election|stock|market|score|won|win|game|match)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"\?\s*$|^(?:what|when|which|who|how|is|are|was|will|did|does|do|can|could|any|tell me)\b", re.IGNORECASE
)
_STATES_NOW = re.compile(
    r"\b\d{1,2}(?::\d{2})\s*(?:[ap]\.?m\.?)?|\b\d{1,2}\s*[ap]\.?m\.?\b|\bo'clock\b|\b(?:half|quarter) (?:past|to)\b|"
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b|"
    r"\b(?:january|february|march|april|june|july|august|september|october|november|december)\b|"
    r"\b(?:19|20)\d{2}\b|\b\d{1,2}(?:st|nd|rd|th)\b|"
    r"\bdegrees?\b|\b(?:it(?:'s| is| will be| was)|it'll be)\s+(?:\w+\s+)?(?:raining|snowing|sunny|cloudy|windy|rain|"
    r"snow|hot|cold|warm|freezing)\b|\bgoing to (?:rain|snow|be (?:sunny|cloudy|windy|hot|cold|warm))\b|"
    r"\b(?:days?|weeks?) (?:until|till|away|ago)\b|"
    r"\b(?:won|lost|elected|announced|reported)\b",
    re.IGNORECASE,
)


def asks_about_now(user_text: str) -> bool:
    """The user asked something only a clock, a calendar or the internet could answer."""
    return bool(_QUESTION.search(user_text.strip()) and _ABOUT_NOW.search(user_text))


def states_now(sentence: str) -> bool:
    """The sentence states a time, a date, the weather or a news item as fact."""
    return _STATES_NOW.search(sentence) is not None

"""Text someone else wrote, made inert in Slack mrkdwn.

Slack reads ``&``, ``<`` and ``>`` as control characters (links, mentions, dates); ``*``, ``_``, ``~``, a backtick
and a ``>`` at the start of a line format text; ``:name:`` becomes an emoji; and unless a text object is
``verbatim``, Slack also turns bare URLs, ``@channel`` and ``#channel`` into links and mentions. None of that may
come from an agent. So every agent-written string is shown inside code: an inline code span for one line, a code
block for several. Slack formats nothing inside code (no bold, emoji, quotes, links or mentions). Its ``&``, ``<``
and ``>`` are still escaped as entities, and a backtick becomes the look-alike modifier letter grave accent (U+02CB),
so the text cannot close its span. Control, bidi and zero-width characters are shown as escapes (``\\u202e``) by
``storage.text.visible``. Text objects that carry agent text are sent with ``verbatim`` set, so Slack does no
automatic linking either.
"""

from __future__ import annotations

from signoff.storage.text import visible

BACKTICK_STAND_IN = "\u02cb"  #: modifier letter grave accent, shown where an agent wrote a backtick


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as the entities Slack expects, with control characters shown as escapes."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _inert(text: str, *, keep_newlines: bool) -> str:
    return visible(text, keep_newlines=keep_newlines).replace("`", BACKTICK_STAND_IN)


def _escaped_length(text: str) -> int:
    return len(text) + 4 * text.count("&") + 3 * (text.count("<") + text.count(">"))


def cut_inert(text: str, limit: int) -> str:
    """``text`` (already inert, not yet escaped) cut so that, once escaped, it takes at most ``limit`` characters.
    Cutting before escaping never splits an entity."""
    if _escaped_length(text) <= limit:
        return text
    size, end = 0, 0
    for end, char in enumerate(text):  # noqa: B007 (end is read after the loop)
        size += _escaped_length(char)
        if size > limit - 1:
            break
    return text[:end] + "…"


def _entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str, limit: int = 1000) -> str:
    """One line of someone else's text as an inline code span, at most ``limit`` characters."""
    inner = cut_inert(_inert(text, keep_newlines=False).strip(), limit - 2)
    return f"`{_entities(inner)}`" if inner else "`-`"


def code_block(text: str, limit: int = 2900) -> str:
    """Someone else's text, line breaks kept, as a code block of at most ``limit`` characters."""
    inner = cut_inert(_inert(text, keep_newlines=True).strip("\n"), limit - 6)
    return f"```{_entities(inner)}```" if inner.strip() else "```-```"


def plain(text: str) -> str:
    """Someone else's text for a ``plain_text`` object (sent with ``emoji`` off): one line, controls shown."""
    return visible(text)

"""Span values shown to people: one escaping function per renderer that interprets text.

Anyone who can send a span chooses its task, model, prompt version, failure reason, error
type, call id, service name and attributes. Those strings reach three renderers that read
markup into them, so each gets a function here, and every place that puts a span value
into one of them goes through it:

- **Markdown** (:func:`markdown`): Streamlit's captions, ``st.markdown``, metric values,
  metric and widget ``help=`` tooltips and expander labels. GitHub-flavoured Markdown
  turns ``![x](url)`` into an image the browser fetches without a click, ``[x](url)`` into
  a link, and a backtick in a value ends the code span around it; Streamlit adds
  ``:red[…]`` directives and ``$…$`` maths. Bare ``http://…``, ``www.…`` and
  ``name@host.tld`` become links too, and that happens on the text *after* backslash
  escapes are read, so those get an invisible word joiner where the pattern needs
  adjacent characters.
- **Plotly** (:func:`plotly`): axis ticks, legend entries and hover labels of the charts.
  Plotly renders a subset of HTML in them, ``<a href=…>`` as a live link included, and
  decodes entities; ``&``, ``<`` and ``>`` as entities show as themselves.
- **Chat webhooks** (:func:`chat`): the ``text`` of an alert's webhook payload, which
  Slack reads as mrkdwn (``<url|label>`` links, ``<!channel>`` pings, ``&``-escapes) and
  Mattermost as Markdown (images, links, ``@channel``).

Tables (``st.dataframe`` cells), ``st.text``, ``st.code`` and ``st.json`` draw text as
text; values go there unescaped, so what a person copies from a cell is the value itself.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["chat", "markdown", "plotly"]

# Every ASCII punctuation character: CommonMark lets a backslash escape any of them, and
# escaping all is simpler to trust than a list of what today's parser and plugins read.
_PUNCTUATION: Final = re.compile(r"([!-/:-@\[-`{-~])")
# Line breaks and other control characters: a newline can start a heading, a list or a
# table row, so a value stays on its line.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_ZERO_WIDTH_SPACE: Final = "\u200b"
_WORD_JOINER: Final = "\u2060"  # invisible, and no line break where it stands
_WWW: Final = re.compile(r"(www)\.", re.IGNORECASE)


def markdown(value: object) -> str:
    r"""``value`` as Markdown source that renders as exactly its text.

    >>> print(markdown("![x](/p.png) `code`"))
    \!\[x\]\(\/p\.png\) \`code\`
    """
    text = _CONTROL.sub(" ", str(value))
    # GFM's autolink-literal extension needs "://", "www." and an e-mail's "@" unbroken.
    text = text.replace("://", f":{_WORD_JOINER}//").replace("@", f"@{_WORD_JOINER}")
    text = _WWW.sub(rf"\1{_WORD_JOINER}.", text)
    return _PUNCTUATION.sub(r"\\\1", text)


def plotly(value: object) -> str:
    """``value`` as Plotly label text: its own characters, never a tag or a link.

    >>> plotly('<a href="http://example.com">x</a>')
    '&lt;a href="http://example.com"&gt;x&lt;/a&gt;'
    """
    text = _CONTROL.sub(" ", str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chat(value: object) -> str:
    r"""``value`` quoted for a Slack or Mattermost message: inert inline code.

    Slack's three escapes come first, so no ``<…>`` control sequence (link, ``<!channel>``)
    survives; inside inline code neither service renders Markdown, links or mentions. A
    backtick in the value would end the code span, so it becomes a similar quote, and
    ``@`` gets a zero-width space after it, so ``@channel`` stays text even where code
    spans are not honoured.

    >>> chat("<!channel> @here")
    '`&lt;!channel&gt; @\u200bhere`'
    """
    text = _CONTROL.sub(" ", str(value)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("`", "\u02cb").replace("@", "@" + _ZERO_WIDTH_SPACE)
    return f"`{text}`"

"""Printing text that agents, suppliers or integrations wrote, so it cannot pass for Order3's own output.

Such text is stored as sent. On a terminal, an ANSI escape sequence in it could
recolour or erase lines, a carriage return could overwrite the start of a line,
and a line break could start a line that reads like a decision ("Approved by
alice"). `visible` escapes every character that is not printable, and
`quoted_block` prints multi-line text with a marked start, a gutter on every
line and a marked end.
"""

from __future__ import annotations

from order3_mcp.commands._runtime import say

# The gutter in front of every line of quoted text.
GUTTER = "  │ "


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """Return `text` with each non-printable character written as a Python-style escape, such as \\x1b.

    A backslash is doubled, so the escape of a real ESC character (\\x1b) and
    the four characters "\\x1b" typed as text look different. Line breaks stay
    when `keep_newlines` is set. Non-printable includes control characters,
    other line and paragraph separators, and format characters such as the
    right-to-left override U+202E.
    """
    parts: list[str] = []
    for char in text:
        if char == "\\":
            parts.append("\\\\")
        elif char.isprintable() or (char == "\n" and keep_newlines):
            parts.append(char)
        else:
            parts.append(_escape(char))
    return "".join(parts)


def quoted_lines(label: str, text: str, *, origin: str) -> list[str]:
    """Return the lines that print `text` as a marked block: a start line naming it, the text in a gutter, an end line."""
    body = visible(text, keep_newlines=True).split("\n")
    count = f"{len(body)} line{'s' if len(body) != 1 else ''}"
    lines = [f"{label} (untrusted text from {origin}, {count}):"]
    lines += [GUTTER + line for line in body]
    lines.append(f"  └ end of {label.lower()}")
    return lines


def quoted_block(label: str, text: str, *, origin: str) -> None:
    """Print `text` as a marked block on stdout; see `quoted_lines`."""
    for line in quoted_lines(label, text, origin=origin):
        say(line)

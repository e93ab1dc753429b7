"""Generated blocks in markdown files: the text between a begin and an end marker line,
rewritten by the scripts that make the tables, the rest of the file untouched."""
from apot.checkpoint import atomic_write


def markers(label, command):
    """The begin and end lines of a block: they name it and the command that rewrites it."""
    return f"<!-- {label}: made by {command} -->", f"<!-- /{label} -->"


def update_block(path, text, begin, end):
    """Replace what lies between the begin and end marker lines of the file at path (and
    nothing else) with text, atomically."""
    with open(path) as f:
        doc = f.read()
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise SystemExit(f"error: {path} needs exactly one '{begin}' line followed by one "
                         f"'{end}' line around the generated table")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    atomic_write(path, lambda f: f.write(f"{head}{begin}\n{text}\n{end}{tail}"), text=True)


def update_or_print(text, path, begin, end, what):
    """A table command's output: written into the block of the file at path (its --update), or
    printed when path is empty."""
    if path:
        update_block(path, text, begin, end)
        print(f"updated the {what} of {path}")
    else:
        print(text)

"""
INI editing that keeps what it does not manage (ceph.conf, glance-api.conf,
cinder.conf, nova.conf): only the options asked for change, every other line
(comments, other options and sections, indentation) stays where it was.
"""

import re


# Option names are equal whatever mix of ' ', '_' and '-' separates words (ceph.conf
# allows all three; oslo.config treats '-' and '_' alike).
def opt_key(name):
    """An option name in the one spelling hastack compares and writes."""
    return re.sub(r"[ _-]+", "_", name.strip().lower())


def _sections(lines):
    """[(section name or None, start index, end index)] of an INI file's lines."""
    bounds = []
    current, start = None, 0
    for idx, line in enumerate(lines):
        match = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if match:
            bounds.append((current, start, idx))
            current, start = match.group(1).strip(), idx
    bounds.append((current, start, len(lines)))
    return bounds


def _value_line(line):
    stripped = line.strip()
    if not stripped or stripped[0] in "#;[" or "=" not in stripped:
        return None
    opt, value = stripped.split("=", 1)
    value = re.split(r"\s[#;]", value, maxsplit=1)[0]
    return opt_key(opt), value.strip()


def parse(text):
    """``{section: {option: value}}`` of INI text (option names as ``opt_key`` gives them)."""
    lines = text.splitlines()
    conf = {}
    for section, start, end in _sections(lines):
        if section is None:
            continue
        opts = conf.setdefault(section, {})
        for line in lines[start + 1 : end]:
            parsed = _value_line(line)
            if parsed:
                opts[parsed[0]] = parsed[1]
    return conf


def diff(current, settings):
    """What setting ``settings`` (``{section: {option: value}}``) over ``current`` (as
    ``parse`` returns it) changes: ``{"[section] option": {"old": .., "new": ..}}``."""
    changes = {}
    for section, options in settings.items():
        for option, value in options.items():
            old = (current or {}).get(section, {}).get(opt_key(option))
            if old != str(value):
                changes[f"[{section}] {opt_key(option)}"] = {"old": old, "new": str(value)}
    return changes


def edit(text, settings):
    """INI text with ``settings`` set: an option is replaced where it stands, a new one
    goes at the end of its section, a new section at the end of the file."""
    lines = text.splitlines()
    for section, options in settings.items():
        for option, value in options.items():
            okey = opt_key(option)
            bounds = {s: (b, e) for s, b, e in _sections(lines)}
            new_line = f"{okey} = {value}"
            if section not in bounds:
                if lines and lines[-1].strip():
                    lines.append("")
                lines += [f"[{section}]", new_line]
                continue
            start, end = bounds[section]
            for idx in range(start + 1, end):
                parsed = _value_line(lines[idx])
                if parsed and parsed[0] == okey:
                    indent = re.match(r"^\s*", lines[idx]).group(0)
                    lines[idx] = indent + new_line
                    break
            else:
                insert = end
                while insert > start + 1 and not lines[insert - 1].strip():
                    insert -= 1
                lines.insert(insert, new_line)
    return "\n".join(lines) + "\n"


def remove_sections(text, sections):
    """INI text without the named sections (header, options and comments inside them,
    up to the next section); everything else stays as it was."""
    lines = text.splitlines()
    doomed = set()
    for section, start, end in _sections(lines):
        if section in sections:
            doomed.update(range(start, end))
    kept = [line for idx, line in enumerate(lines) if idx not in doomed]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept) + "\n" if kept else ""

"""Shell completion scripts (bash, zsh, fish), generated from jobctl's argparse tree.

The tree is read once into plain :class:`Node` records (commands, their options, which
options take a value and what values); each shell gets small lookup functions generated
from them and a fixed driver that finds the command being typed (skipping options and
their values) and offers its subcommands, options or an option's values. Completion is
static: kinds, uuids and schedule ids are not fetched from a server.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from . import _values as v

__all__ = ["Node", "script", "tree"]

_FILE = "@file"
"""Marks an option whose value is a file path."""
_VALUE_HINTS: dict[str, list[str]] = {
    "state": list(v.STATE_CHOICES),
    "level": ["debug", "info", "warn", "error"],
    "tls_ca": [_FILE],
}


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str]


@dataclass
class Node:
    """One command (the root has path ``""``)."""

    path: str
    help: str
    options: list[Option] = field(default_factory=list)
    children: dict[str, Node] = field(default_factory=dict)
    values: list[str] = field(default_factory=list)
    """Choices of its positional arguments (``completion bash|zsh|fish``)."""

    def walk(self) -> list[Node]:
        return [self, *(node for child in self.children.values() for node in child.walk())]


def tree(parser: argparse.ArgumentParser, path: str = "", help: str = "") -> Node:
    node = Node(path, help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                child_path = f"{path} {name}".strip()
                node.children[name] = tree(sub, child_path, helps.get(name, ""))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            choices = [str(c) for c in action.choices or []] or _VALUE_HINTS.get(action.dest, [])
            node.options.append(
                Option(list(action.option_strings), action.help or "", action.nargs != 0, choices)
            )
        elif action.choices:
            node.values.extend(str(c) for c in action.choices)
    return node


def _words(items: list[str]) -> str:
    return " ".join(items)


def _quote(text: str) -> str:
    """Single-quoted for bash, zsh and fish (no expansion)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_case(key: str, words: list[str]) -> str:
    values = _fish_quote(_words(words))
    return f"        case {_fish_quote(key)}\n            string split ' ' -- {values}\n"


def _tables(root: Node, *, fish: bool = False) -> str:
    """The lookup functions: subcommands, options, value-taking options and values of a
    command path (bash and zsh share the syntax; fish has its own)."""
    nodes = root.walk()
    lookups = {
        "subcommands": {n.path: list(n.children) for n in nodes},
        "options": {n.path: [f for o in n.options for f in o.flags] for n in nodes},
        "valued": {n.path: [f for o in n.options if o.takes_value for f in o.flags] for n in nodes},
    }
    out = []
    for name, table in lookups.items():
        if fish:
            cases = "".join(_fish_case(p, w) for p, w in table.items() if w)
            out.append(f'function __jobctl_{name}\n    switch "$argv[1]"\n{cases}    end\nend\n')
        else:
            cases = "".join(
                f"        {_quote(p)}) echo {_quote(_words(w))} ;;\n" for p, w in table.items() if w
            )
            out.append(f'__jobctl_{name}() {{\n    case "$1" in\n{cases}    esac\n}}\n')
    values = []
    for n in nodes:
        for o in n.options:
            if o.choices:
                values += [(f"{n.path}|{flag}", o.choices) for flag in o.flags]
        if n.values:
            values.append((f"{n.path}|", n.values))
    if fish:
        cases = "".join(_fish_case(k, w) for k, w in values)
        out.append(
            f'function __jobctl_values\n    switch "$argv[1]|$argv[2]"\n{cases}    end\nend\n'
        )
    else:
        cases = "".join(f"        {_quote(k)}) echo {_quote(_words(w))} ;;\n" for k, w in values)
        out.append(f'__jobctl_values() {{\n    case "$1|$2" in\n{cases}    esac\n}}\n')
    return "\n".join(out)


_BASH_DRIVER = r"""
# The command path typed so far ("", "schedules", "schedules pause"...), from words
# 1..$2-1 of the array named $1: options and their values are skipped.
__jobctl_path() {
    local -n __words=$1
    local cmdpath="" word skip=0 i
    for ((i = 1; i < $2; i++)); do
        word="${__words[i]}"
        if ((skip)); then skip=0; continue; fi
        if [[ $word == -* ]]; then
            [[ $word != *=* && " $(__jobctl_valued "$cmdpath") " == *" $word "* ]] && skip=1
            continue
        fi
        if [[ " $(__jobctl_subcommands "$cmdpath") " == *" $word "* ]]; then
            cmdpath="${cmdpath:+$cmdpath }$word"
        fi
    done
    echo "$cmdpath"
}

_jobctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmdpath values
    cmdpath="$(__jobctl_path COMP_WORDS "$COMP_CWORD")"
    COMPREPLY=()
    if [[ $prev == -* && " $(__jobctl_valued "$cmdpath") " == *" $prev "* ]]; then
        values="$(__jobctl_values "$cmdpath" "$prev")"
        if [[ $values == @file ]]; then
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        elif [[ -n $values ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
        fi
        return 0
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(__jobctl_options "$cmdpath")" -- "$cur")
    else
        values="$(__jobctl_subcommands "$cmdpath") $(__jobctl_values "$cmdpath" "")"
        mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
    fi
    return 0
}

complete -F _jobctl jobctl
"""

_ZSH_DRIVER = r"""
_jobctl() {
    local cur="${words[CURRENT]}" prev="${words[CURRENT-1]}" cmdpath="" word values
    local -i skip=0 i
    for ((i = 2; i < CURRENT; i++)); do
        word="${words[i]}"
        if ((skip)); then skip=0; continue; fi
        if [[ $word == -* ]]; then
            [[ $word != *=* && " $(__jobctl_valued "$cmdpath") " == *" $word "* ]] && skip=1
            continue
        fi
        if [[ " $(__jobctl_subcommands "$cmdpath") " == *" $word "* ]]; then
            cmdpath="${cmdpath:+$cmdpath }$word"
        fi
    done
    if [[ $prev == -* && " $(__jobctl_valued "$cmdpath") " == *" $prev "* ]]; then
        values="$(__jobctl_values "$cmdpath" "$prev")"
        if [[ $values == @file ]]; then
            _files
        elif [[ -n $values ]]; then
            compadd -- ${=values}
        fi
        return 0
    fi
    if [[ $cur == -* ]]; then
        compadd -- ${=$(__jobctl_options "$cmdpath")}
    else
        values="$(__jobctl_subcommands "$cmdpath") $(__jobctl_values "$cmdpath" "")"
        compadd -- ${=values}
    fi
    return 0
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _jobctl "$@"
else
    compdef _jobctl jobctl
fi
"""

_FISH_DRIVER = r"""
# The command path typed so far ("", "schedules", "schedules pause"...).
function __jobctl_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmdpath ""
    set -l skip 0
    for word in $words
        if test $skip = 1
            set skip 0
            continue
        end
        if string match -q -- '-*' $word
            set -l valued (__jobctl_valued "$cmdpath")
            if not string match -q -- '*=*' $word; and contains -- $word $valued
                set skip 1
            end
            continue
        end
        if contains -- $word (__jobctl_subcommands "$cmdpath")
            set cmdpath (string trim -- "$cmdpath $word")
        end
    end
    echo "$cmdpath"
end

function __jobctl_at
    set -l cmdpath (__jobctl_path)
    test "$cmdpath" = "$argv[1]"
end

complete -c jobctl -f
"""


def _fish_completes(root: Node) -> str:
    lines = []
    for node in root.walk():
        at = f"-n {_fish_quote(f'__jobctl_at {_quote(node.path)}')}"
        for name, child in node.children.items():
            lines.append(f"complete -c jobctl {at} -a {name} -d {_fish_quote(child.help)}")
        for value in node.values:
            lines.append(f"complete -c jobctl {at} -a {value}")
        for option in node.options:
            spec = []
            for flag in option.flags:
                spec.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
            if option.choices == [_FILE]:
                spec.append("-r -F")
            elif option.choices:
                spec.append(f"-x -a {_fish_quote(_words(option.choices))}")
            elif option.takes_value:
                spec.append("-x")
            help = option.help.replace("%%", "%").split(" (")[0]
            lines.append(f"complete -c jobctl {at} {' '.join(spec)} -d {_fish_quote(help)}")
    return "\n".join(lines) + "\n"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (bash, zsh or fish)."""
    root = tree(parser)
    header = f"# {shell} completion for jobctl (generated by `jobctl completion {shell}`)\n"
    if shell == "bash":
        return header + "\n" + _tables(root) + _BASH_DRIVER
    if shell == "zsh":
        return "#compdef jobctl\n" + header + "\n" + _tables(root) + _ZSH_DRIVER
    if shell == "fish":
        return header + "\n" + _tables(root, fish=True) + _FISH_DRIVER + _fish_completes(root)
    raise ValueError(f"unknown shell {shell!r}")

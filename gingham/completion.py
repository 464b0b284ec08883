"""`gingham completion bash`: a bash completion script made from the command line's own parser,
so it offers exactly the commands, subcommands, options and choices that `gingham` accepts
(and the names of the labs that are up after `--name`). Load it with
`source <(gingham completion bash)`."""

from __future__ import annotations

import argparse
import shlex

SCRIPT = """_gingham() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} path=gingham w i
  declare -A words=(
%(table)s
  )
  declare -A values=(
%(values)s
  )
  if [[ $prev == --name || $prev == --lab ]]; then
    COMPREPLY=( $(compgen -W "$(ls %(labs)s 2>/dev/null)" -- "$cur") ); return
  fi
  if [[ $prev == -f || $prev == --file ]]; then
    COMPREPLY=( $(compgen -f -- "$cur") ); return
  fi
  for ((i=1; i<COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    [[ $w == -- ]] && { COMPREPLY=(); return; }
    [[ -n ${words["$path $w"]+set} ]] && path="$path $w"
  done
  if [[ -n ${values["$path $prev"]+set} ]]; then
    COMPREPLY=( $(compgen -W "${values["$path $prev"]}" -- "$cur") ); return
  fi
  COMPREPLY=( $(compgen -W "${words[$path]}" -- "$cur") )
}
complete -F _gingham gingham
"""


def table(parser: argparse.ArgumentParser) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(command path ("gingham", "gingham lab get"...) -> the words that may follow it,
    "path option" -> the values that option takes)."""
    words: dict[str, list[str]] = {}
    values: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        here: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    here.append(name)
                    walk(sub, f"{path} {name}")
            else:
                here += action.option_strings
                if action.choices and not action.option_strings:
                    here += [str(c) for c in action.choices]
                elif action.choices:
                    for opt in action.option_strings:
                        values[f"{path} {opt}"] = [str(c) for c in action.choices]
        words[path] = here
    walk(parser, "gingham")
    return words, values


def bash(parser: argparse.ArgumentParser, labs_dir: str) -> str:
    words, values = table(parser)

    def rows(d: dict[str, list[str]]) -> str:
        return "\n".join(f"    [{shlex.quote(k)}]={shlex.quote(' '.join(v))}" for k, v in d.items())
    return SCRIPT % {"table": rows(words), "values": rows(values), "labs": shlex.quote(labs_dir)}

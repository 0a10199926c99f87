"""One module per ``cephalo`` subcommand; each exposes ``command`` (a click.Command).

A command parses its arguments, reads its own params section, calls one library
function and writes its outputs. It holds no logic of its own.
"""

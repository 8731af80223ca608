"""The user's machine: the `anneal` command's process (`cli`, where its console script enters),
the embedded set-up it starts and stops (`cluster` for `up`/`down`, `sessions` for the
process sessions they own) and the demo (`demo`).
"""

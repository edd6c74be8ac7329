"""What starts Tab Agent: the `tabagent` command and the embedded in-process chain.

The one package that knows every service; it sits above them all (nothing imports it
but the console script, tests and benchmarks).
"""

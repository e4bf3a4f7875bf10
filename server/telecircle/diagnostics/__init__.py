"""The checks behind ``telecircle doctor``: each looks at one part of a deployment and
says in plain words whether it is sound, and if not, what is wrong and how to fix it.

Each check is a small function of a :class:`~telecircle.diagnostics.deployment.Deployment`
returning a :class:`~telecircle.diagnostics.results.CheckResult`. Checks never create
files (keys, databases), never write anything that stays, and talk only to the
addresses the settings name.
"""

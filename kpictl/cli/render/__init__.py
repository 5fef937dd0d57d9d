"""Every output format of kpictl, built from the services' dataclasses (the team style guide's "one output
object"): JSON documents, table and CSV rows, the Nagios line and the Prometheus text, and the
exit codes that follow from a result. Pure functions: no database, no stdout (`cli/output.py`
writes what these build). A Decimal reaches JSON only through `kpictl.serialize.decimal_json`.
"""

"""Matchers: what links findings to the record stores' registers and to findings in other evidence.

Each module here holds one matcher (`workers.matchers.base.Matcher`), registered in `workers.matchers.registry`;
`workers.crossmatch` runs them on an item once all its analyses have ended.
"""

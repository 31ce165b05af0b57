"""Request and response models of the case API (Create / Read), one module per area.

The database tables are in `storage.tables`; these are what the API accepts and answers.
"""

"""The payments domain, shared by both services: one home per payment lifecycle.

``incoming/`` and ``outgoing/`` each hold their states (the models' enums), the table of
allowed transitions (data, checked exhaustively by the tests) and the store functions that
perform each transition in one transaction together with its webhook event. Services call
those functions; no other module changes a payment's state.
"""

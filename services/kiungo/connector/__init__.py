"""The connector: ILP over HTTP from peers, routing, SPSP and STREAM receiving (DESIGN §1, §3)."""

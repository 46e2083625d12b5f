"""Events ("second cash"): one entity decided as its data arrives, with the batch's rules.

stage    an event's row validated by the catalogue's rules, as a delivery's is
scope    the entities an event affects, and the rows their features read
decide   their features recomputed, their conditions decided by durable-rules
"""

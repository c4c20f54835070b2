"""Safe rollout on Ray Serve (SPEC S7): sticky weighted routing between champion and challenger, shadow copies,
registry following inside the replicas, and a guard that rolls a bad challenger back."""

"""Reserved for Chaos Toolkit experiments and their custom probes/actions; nothing here yet (see README "Not yet")."""

"""Stage 1-3, the language front end: text -> syntax tree (:mod:`.parse`, :mod:`.syntax`) -> IR
(:mod:`.lower`) -> checked IR (:mod:`.check`). Torch-free."""

"""The parts of ``telecircle backup`` and ``telecircle restore``
(:mod:`telecircle.backup_commands` runs them in order).

- :mod:`.errors`: the two outcomes short of success (refused: nothing written; a check
  failed: the backup is damaged or its keys do not fit).
- :mod:`.refusals`: everything checked before anything is written.
- :mod:`.manifest`: what each folder holds, its ``manifest.json`` and checksums.
- :mod:`.key_folder`: copying the keys out, checking and installing them on restore.
- :mod:`.database_part`: taking the snapshot and restoring it.
- :mod:`.proof`: proving restored keys fit the restored database.
- :mod:`.audit_trail`, :mod:`.private_files`, :mod:`.readmes`, :mod:`.wording`: helpers.
"""

"""File readers: data files read whole or in chunks, with clear errors naming the file and
line, and their memory estimated before a whole read.

- :mod:`bastion.io.stream` — CSV and Parquet: :func:`~bastion.io.stream.read_table`,
  :func:`~bastion.io.stream.iter_chunks`, :func:`~bastion.io.stream.read_frame`,
  :func:`~bastion.io.stream.estimate_memory`.

Readers only read: checking what they read is validation's (``bastion.stages.validate``,
``bastion.stages.file_check``).
"""

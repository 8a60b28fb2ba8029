"""`voicebatch import`: a manuscript (EPUB, Markdown, plain text) becomes a manifest a producer can edit.

Each reader turns its format into a `Book` (chapters of cleaned paragraphs, plus what was skipped and why);
`manifest_writer` turns a Book into a validated manifest file; `importer.import_book` ties them together.
"""

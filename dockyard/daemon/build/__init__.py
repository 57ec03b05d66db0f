"""Building images from a Dockerfile, as dockerd's classic builder does (``POST /build``).

- :mod:`.dockerfile` parses the file into stages of instructions (:mod:`.arguments` splits
  each instruction's arguments as docker does); :mod:`.commands` turns an instruction into a
  typed command, expanding variables (:mod:`.shell_words`) where docker does.
- :mod:`.context` receives the build context and does ``COPY`` and ``ADD``.
- :mod:`.options` decodes the request's query string.
- :mod:`.builder` runs the steps: each in a container of its own, committed into an image whose
  parent is the previous step's; :mod:`.cache` finds a step's image from an earlier build.
"""

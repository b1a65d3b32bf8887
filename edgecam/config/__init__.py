"""Configuration: YAML files and command-line values validated into frozen dataclasses.

``loader`` is the one reader and checker (file, line, key and a close-match hint in every
error); ``finetune`` and ``camera`` hold the typed configs of the commands. This package
imports nothing, so the runtime can use the dataclasses without loading YAML.
"""

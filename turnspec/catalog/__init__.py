"""The models on this machine: what `turnspec list` shows and `turnspec rm` removes.

inventory.py enumerates the Hugging Face cache and GGUF folders; files.py judges a model's files (format,
missing shards); pending.py reads what an interrupted `turnspec pull` left; remove.py deletes a cached repo, one
cached GGUF or a profile.
"""

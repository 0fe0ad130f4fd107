"""Getting models from the Hugging Face Hub into the standard HF cache (`turnspec pull`).

remote.py asks the Hub what a repo holds (model_info) and reads a remote GGUF's header with range requests;
fetch.py downloads one file into the cache, resumably; pull.py decides what to fetch, checks before the big
files that the model can chat (a chat template, access granted), and fetches.
"""

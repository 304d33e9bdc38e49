"""Image files -> the uint8 pixels the network sees, shared by both ends of the data flow:
training decodes its data-set files here, and the proxy decodes uploads here, so a photo is
seen in training exactly as the page sends it.

  decode.py  bytes -> [32,32,3] uint8 (`to_pixels`), with limits checked on the header
"""

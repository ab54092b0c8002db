"""Texts that show per-row int8 (quantize.py) how large each input channel of each layer gets.

Transformer encoders carry a few channels that are far larger than the rest (up to 15x on the bundled model, in
the same channels whatever the text). quantize.py divides those channels down before quantizing a row and
multiplies the weights' rows up to match (SmoothQuant), which needs each channel's typical maximum: measured once,
at export, on these sentences. They are varied English on purpose (reviews, news, questions, instructions, short
and long, polite and rude), written for this file; the measurement needs the channels' scale, not the task.
Tokenizers of other languages still see words and punctuation here, which is what sets those channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textclass.checkpoint import Checkpoint
    from textclass.runtime.batching import Batch

CALIBRATION_TEXTS = (
    "I've been waiting for a HuggingFace course my whole life.",
    "So have I!",
    "The film is a gorgeous, witty, seductive movie.",
    "A dull, lifeless script that never finds its footing.",
    "It's not bad at all, actually, though the ending drags a little.",
    "I wanted to like this, but the second half is a mess.",
    "An unexpectedly moving story about two brothers who run a failing bakery in a small coastal town.",
    "The acting is fine, the music is forgettable, and the plot holes are big enough to drive a truck through.",
    "Worst purchase I have ever made. The battery died after two days and support never answered.",
    "Five stars: fast delivery, sturdy packaging, and the blender works exactly as described.",
    "meh.",
    "Absolutely brilliant!!!",
    "Not good, not terrible, just okay.",
    "The central bank left interest rates unchanged on Thursday, citing slowing inflation and a weaker labour market.",
    "Heavy rain is expected across the northern region tonight, with local flooding possible near the river.",
    "The company reported quarterly revenue of 4.2 billion dollars, up 8 percent from a year earlier.",
    "Researchers found that the new vaccine reduced hospital admissions by nearly half in adults over sixty-five.",
    "Scientists have discovered a new species of frog in the rainforests of Ecuador.",
    "The match ended in a 2-2 draw after a late penalty in the ninety-third minute.",
    "How do I reset my password if I no longer have access to my email?",
    "What time does the pharmacy on Main Street close on Sundays?",
    "Can you recommend a good book about the history of mathematics?",
    "Why is the sky blue during the day but red at sunset?",
    "Please turn off the lights when you leave the room.",
    "Preheat the oven to 180 degrees, then bake the bread for thirty-five minutes until golden.",
    "To install the package, run pip install followed by the package name in a terminal.",
    "Click the blue button in the top right corner to save your changes.",
    "Thank you so much for your help yesterday, I really appreciate it.",
    "This is the third time I've asked for a refund and I'm losing my patience.",
    "Shut up and leave me alone.",
    "Congratulations on your promotion, you truly deserve it!",
    "We regret to inform you that your application was not successful this year.",
    "The hotel room was clean and quiet, but the breakfast was overpriced and the staff seemed indifferent.",
    "The sequel keeps everything that made the first game great and fixes almost everything that didn't.",
    "A tender, funny and ultimately heartbreaking portrait of a family coming apart.",
    "Too long, too loud, and far too pleased with itself.",
    "The soundtrack alone is worth the price of admission.",
    "I fell asleep twice, and the second time I was grateful for it.",
    "The director's eye for detail turns an ordinary suburban street into something quietly sinister.",
    "It has moments of real beauty, but they are buried under a pile of clichés.",
    "My grandmother's recipe calls for butter, flour, sugar, two eggs and a pinch of salt.",
    "The train to Edinburgh was delayed by forty minutes because of a signal failure near York.",
    "According to the report, more than 60% of respondents said they work from home at least once a week.",
    "Error 404: the page you requested could not be found.",
    "Meeting moved to 3:30 pm, room B-204. Bring the slides!",
    "lol that was so funny 😂 can't stop laughing",
    "Visit https://example.com/docs for the full documentation and examples.",
    "Dear Sir or Madam, I am writing to complain about the noise from the construction site next door.",
    "The patient presented with a mild fever, a persistent cough and shortness of breath.",
    "The contract may be terminated by either party with thirty days' written notice.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Roman Empire reached its greatest extent under the emperor Trajan in the second century.",
    "She opened the letter slowly, already knowing what it would say.",
    "Once upon a time, in a kingdom by the sea, there lived a king who could not sleep.",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers like 3.14159, 1,000,000 and 42% appear in many documents.",
    "Don't won't can't shouldn't they're we've I'd",
    "Honestly? I expected more. Much more.",
    "Great phone, terrible camera.",
    "The service was slow but the food made up for it.",
    "I would not recommend this product to anyone.",
    "Best concert I've been to in years; the crowd sang every word.",
    "The update broke the app on older devices and the developers have said nothing.",
    "A small, well-made film that trusts its audience.",
)


def calibration_batches(checkpoint: Checkpoint) -> list[Batch]:
    """CALIBRATION_TEXTS tokenized by the checkpoint's own tokenizer, in the batches the engines run."""
    from textclass.runtime.batching import make_batches

    tokenizer = checkpoint.load_tokenizer()
    encoded = tokenizer.encode_batch(list(CALIBRATION_TEXTS), truncation=True)
    token_types = checkpoint.config.type_vocab_size > 0
    return list(make_batches(encoded, 2048, tokenizer.pad_token_id, token_types))

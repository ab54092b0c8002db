"""Fine-tuning (`train`) and evaluation (`evaluate`) of sequence classifiers; torch is imported lazily."""

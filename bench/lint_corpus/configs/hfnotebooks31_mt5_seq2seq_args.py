batch_size=4
args = Seq2SeqTrainingArguments(
  "mt5-translate-en-my",
  evaluation_strategy = "epoch",
  learning_rate=2e-5,
   per_device_train_batch_size=batch_size,
   per_device_eval_batch_size=batch_size,
weight_decay=0.01,
    save_total_limit=3,
    num_train_epochs=1,
predict_with_generate=True,
   fp16=True,
    )

export OUTPUT_DIR_NAME=bart_utest_output
export CURRENT_DIR=${PWD}
export OUTPUT_DIR=${CURRENT_DIR}/${OUTPUT_DIR_NAME}

# Make output directory if it doesn't exist
mkdir -p $OUTPUT_DIR

# Add parent directory to python path to access lightning_base.py and utils.py
export PYTHONPATH="../":"${PYTHONPATH}"

python finetune.py \
--data_dir=cnn_tiny/ \
--model_name_or_path=t5-large \
--learning_rate=3e-5 \
--train_batch_size=1 \
--eval_batch_size=2 \
--output_dir=$OUTPUT_DIR \
--num_train_epochs=10  \
--n_gpu=1 \
--fp16 \
--fp16_opt_level=O1 \
--do_train $@

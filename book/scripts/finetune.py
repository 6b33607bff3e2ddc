"""Fine-tune the walkthrough's configuration from the command line, on one process or many.

    python book/scripts/finetune.py --help
    python book/scripts/finetune.py --train-size 2000 --epochs 1 --output _outputs/run
    accelerate launch --multi_gpu --num_processes 2 book/scripts/finetune.py --cpu --batch-size 16

The program is ``companion.finetune`` (tested in tests/test_distributed.py); this file only
runs it, so that ``accelerate launch`` has a script to start in every process.
See the chapter "Scaling out" (book/scaling_out.ipynb).
"""

from companion.finetune import main

if __name__ == "__main__":
    main()

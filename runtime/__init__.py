"""What every command of the project shares to start, stop and say where it ran.

cli_args.py    the argparse parser and types of the command-line tools: one-line errors
interrupts.py  how they stop on Ctrl-C or SIGTERM: one line and the shell's exit code
tf_startup.py  TensorFlow imported with its start-up lines sent to a file
cpu.py         the CPU, its flags and whether it has AMX, printed beside every figure
"""

/* cli.h: the subcommands of the `colbert` executable. Each takes the
 * arguments after its name (argv[0] is the subcommand), prints its own
 * --help, and returns the process exit status (0 ok, 1 error, 2 usage). */
#ifndef CB_CLI_H
#define CB_CLI_H
int cli_tokenize(int argc, char **argv);  /* cli_encode.c */
int cli_encode(int argc, char **argv);    /* cli_encode.c */
int cli_prepare(int argc, char **argv);   /* cli_prepare.c */
int cli_train(int argc, char **argv);     /* cli_train.c */
int cli_eval(int argc, char **argv);      /* cli_eval.c */
#endif

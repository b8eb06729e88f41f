// placeholder, replaced by the flags/host-path work of issue 3
#include <stdio.h>
int main(void) { fprintf(stderr, "train_gpt: not implemented yet\n"); return 2; }

/*
 * The seccomp tests' prober: busybox has no way to make an arbitrary system call.
 *
 * Each argument LABEL=ABI:NUMBER[:ARG...] makes one raw call and prints "LABEL ERRNO" (0 when
 * the call succeeded). ABI is "native", "x32" (the number is sent with x86_64's x32 bit) or
 * "i386" (int 0x80 from this 64-bit program: the kernel runs it as a 32-bit call, and seccomp
 * sees AUDIT_ARCH_I386). Built static (gcc -static) so that it runs in a busybox image.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define X32_SYSCALL_BIT 0x40000000L

/* -errno on failure, as the kernel returns it. */
static long i386_call(long number, unsigned long *args)
{
#if defined(__x86_64__)
    int result; /* the 32-bit eax: -errno on failure */
    /* Arguments in ebx, ecx, edx, esi, edi; the 32-bit entry from 64-bit code does not
       preserve r8-r11. */
    __asm__ volatile("int $0x80"
                     : "=a"(result)
                     : "a"(number), "b"(args[0]), "c"(args[1]), "d"(args[2]), "S"(args[3]),
                       "D"(args[4])
                     : "memory", "r8", "r9", "r10", "r11");
    return result;
#else
    (void)number, (void)args;
    return -ENOSYS;
#endif
}

static int probe(const char *abi, long number, unsigned long *args)
{
    long result;
    if (strcmp(abi, "i386") == 0) {
        result = i386_call(number, args);
        return result < 0 && result > -4096 ? (int)-result : 0;
    }
    if (strcmp(abi, "x32") == 0)
        number |= X32_SYSCALL_BIT;
    result = syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]);
    if (result < 0)
        return errno;
    if (number == SYS_clone) { /* forked: the child leaves at once, the parent reaps it */
        if (result == 0)
            _exit(0);
        waitpid((pid_t)result, NULL, 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *spec = strdup(argv[i]);
        char *label = strtok(spec, "=");
        char *abi = strtok(NULL, ":");
        char *number = strtok(NULL, ":");
        unsigned long args[6] = {0};
        if (!label || !abi || !number) {
            fprintf(stderr, "bad probe %s\n", argv[i]);
            return 2;
        }
        for (int n = 0; n < 6; n++) {
            char *arg = strtok(NULL, ":");
            if (!arg)
                break;
            args[n] = strtoul(arg, NULL, 0);
        }
        printf("%s %d\n", label, probe(abi, strtol(number, NULL, 0), args));
        free(spec);
    }
    return 0;
}

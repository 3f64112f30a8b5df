/* The sandbox ("pause") process of every drover pod: PID 1 of the pod's namespaces.
 * It holds the namespaces open, reaps orphaned children and exits 0 on SIGTERM or
 * SIGINT. Built static (`cc -static -Os`) so the image needs no libc. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) { (void)sig; stop_requested = 1; }

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction stop = {0}, child = {0};
  sigset_t blocked, waiting;

  stop.sa_handler = on_stop;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGTERM, &stop, NULL) || sigaction(SIGINT, &stop, NULL) ||
      sigaction(SIGCHLD, &child, NULL))
    return 1;

  /* Block the signals outside sigsuspend so none is lost between the check and the wait. */
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGCHLD);
  sigprocmask(SIG_BLOCK, &blocked, &waiting);
  sigdelset(&waiting, SIGTERM);
  sigdelset(&waiting, SIGINT);
  sigdelset(&waiting, SIGCHLD);
  while (!stop_requested)
    sigsuspend(&waiting);
  return 0;
}

package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// openPTY opens a new pseudo-terminal pair through /dev/ptmx, as
// posix_openpt, unlockpt and ptsname do (pty(7)).
func openPTY() (*pty, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var unlock int32
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		master.Close()
		return nil, fmt.Errorf("unlocking the terminal: %w", err)
	}
	var n uint32
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		master.Close()
		return nil, fmt.Errorf("finding the terminal's number: %w", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, err
	}
	return &pty{master: master, slave: slave}, nil
}

// setSize sets the terminal's window size; the kernel sends SIGWINCH to
// the terminal's foreground process group.
func (p *pty) setSize(rows, cols uint16) error {
	ws := struct{ row, col, xpixel, ypixel uint16 }{rows, cols, 0, 0}
	return ioctl(p.master, syscall.TIOCSWINSZ, unsafe.Pointer(&ws))
}

// ioctl runs an ioctl on f's descriptor through SyscallConn, which, unlike
// Fd, leaves the file in non-blocking mode so that Close still interrupts a
// blocked Read.
func ioctl(f *os.File, req uint, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

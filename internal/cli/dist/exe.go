package main

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"fmt"
)

// checkExecutable checks that bin is an executable for p: an ELF, Mach-O
// or PE file, as the system wants, for the processor p names. A build
// for the wrong platform would install and then fail on every kubectl.
func checkExecutable(bin []byte, p platform) error {
	r := bytes.NewReader(bin)
	var got string
	switch p.OS {
	case "linux":
		f, err := elf.NewFile(r)
		if err != nil {
			return fmt.Errorf("not a Linux executable: %w", err)
		}
		if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
			return fmt.Errorf("an ELF file of type %v, not an executable", f.Type)
		}
		got = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
	case "darwin":
		f, err := macho.NewFile(r)
		if err != nil {
			return fmt.Errorf("not a macOS executable: %w", err)
		}
		if f.Type != macho.TypeExec {
			return fmt.Errorf("a Mach-O file of type %v, not an executable", f.Type)
		}
		got = map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
	case "windows":
		f, err := pe.NewFile(r)
		if err != nil {
			return fmt.Errorf("not a Windows executable: %w", err)
		}
		if f.Characteristics&pe.IMAGE_FILE_EXECUTABLE_IMAGE == 0 || f.Characteristics&pe.IMAGE_FILE_DLL != 0 {
			return fmt.Errorf("a PE file that is not a program (characteristics %#x)", f.Characteristics)
		}
		got = map[uint16]string{pe.IMAGE_FILE_MACHINE_AMD64: "amd64", pe.IMAGE_FILE_MACHINE_ARM64: "arm64"}[f.Machine]
	default:
		return fmt.Errorf("no check for %s executables", p.OS)
	}
	if got != p.Arch {
		return fmt.Errorf("built for %q, not %s", got, p.Arch)
	}
	return nil
}

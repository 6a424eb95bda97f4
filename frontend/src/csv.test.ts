import { describe, expect, it } from 'vitest';
import { delimiter, firstLineEnd, guessMapping, headerLine, mappingProblems, parseRows } from './csv';

describe('parseRows', () => {
  it('reads quotes, doubled quotes, separators in quotes and CRLF', () => {
    const text = 'nombre;telefono\r\n"Pérez; Ana";"+34 600"\r\n"dice ""hola""";612\r\n';
    expect(parseRows(text, ';')).toEqual([['nombre', 'telefono'], ['Pérez; Ana', '+34 600'], ['dice "hola"', '612']]);
  });
  it('stops after maxRows', () => expect(parseRows('a\nb\nc\nd', ',', 2)).toEqual([['a'], ['b']]));
  it('keeps a last line without a line break', () => expect(parseRows('a,b\n1,2', ',')).toEqual([['a', 'b'], ['1', '2']]));
});

describe('delimiter', () => {
  it('picks the separator the header uses most', () => {
    expect(delimiter('nombre;telefono;grupo')).toBe(';');
    expect(delimiter('name,phone')).toBe(',');
    expect(delimiter('name\tphone\tgroup')).toBe('\t');
  });
});

describe('mapping', () => {
  it('guesses the server names, Spanish or English, accents and case aside', () => {
    expect(guessMapping(['Teléfono', 'Nombre', 'Sustantivo', 'GRUPO', 'Ciudad'])).toEqual(['telefono', 'nombre', 'sustantivo', 'grupo', 'attr:ciudad']);
    expect(guessMapping(['phone', 'name', 'group'])).toEqual(['telefono', 'nombre', 'grupo']);
  });
  it('gives a field to one column only', () => {
    expect(guessMapping(['phone', 'movil'])).toEqual(['telefono', 'attr:movil']);
  });
  it('finds what is wrong', () => {
    expect(mappingProblems(['nombre', 'attr:x'])).toEqual(['contacts.mapping.noPhone']);
    expect(mappingProblems(['telefono', 'nombre', 'nombre'])).toEqual(['contacts.mapping.duplicate']);
    expect(mappingProblems(['telefono', 'skip'])).toEqual([]);
  });
  it('writes the header the server reads, skipped columns under names it ignores', () => {
    expect(headerLine(['nombre', 'telefono', 'skip', 'attr:código postal'], ';')).toBe('nombre;telefono;_skip_2;código postal');
    expect(headerLine(['telefono', 'attr:a,b'], ',')).toBe('telefono,"a,b"');
  });
  it('finds the end of the header line, quotes respected', () => {
    const bytes = new TextEncoder().encode('"a\nb",telefono\n1,2\n');
    expect(firstLineEnd(bytes)).toBe(15);
    expect(firstLineEnd(new TextEncoder().encode('no break'))).toBe(8);
  });
});

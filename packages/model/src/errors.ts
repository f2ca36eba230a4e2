/** The one error type of @fast-dllm/model: says what is wrong, where (file / tensor), and what to do. */
export class ModelFormatError extends Error {
  readonly file?: string;
  readonly tensor?: string;
  constructor(message: string, where: { file?: string; tensor?: string } = {}) {
    const loc = [where.file ? `file ${where.file}` : '', where.tensor ? `tensor ${where.tensor}` : '']
      .filter(Boolean)
      .join(', ');
    super(loc ? `${message} (${loc})` : message);
    this.name = 'ModelFormatError';
    this.file = where.file;
    this.tensor = where.tensor;
  }
}
